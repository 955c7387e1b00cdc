/* Per-patch mixed precision: outlier test, low-bit requantization, spatial kernels reading a
 * lowered stage input (see tp_lowbit.h).
 * - outlier test: is a value outside [zp - threshold, zp + threshold]; a side the producing op's
 *   activation range cannot cross is not tested (the generator passes -128 / 127). On Cortex-M4/M7
 *   4 values per 32-bit load (SSUB8 sets the GE flags, SEL collects them: 3 instructions per 4
 *   values and side); on Cortex-M55 running lane max / min of 16 values per Helium load, one
 *   reduction per row; a row with an outlier ends the test;
 * - requantization of a patch an op just wrote: where the generator proved it equal to the table on
 *   every value a non-outlier patch can hold, by unsigned byte arithmetic (tp_lb_grid: saturating and
 *   halving byte adds, a mask; 9 instructions per 4 values on Cortex-M4/M7; on Cortex-M55 the table's
 *   gather loads take fewer instructions than these steps, and tp_lb_grid reads the table);
 * - otherwise through the 256-entry table: on Cortex-M55 16 values per gather load (VLDRB with
 *   byte offsets), on Cortex-M4/M7 one load and one store per 4 values;
 * - a lowered stage input is gathered through the table into a small stack buffer (TP_LB_GATHER bytes:
 *   the rows one output row reads, as many columns as fit), and the ordinary (optimised) kernel runs
 *   on it; a window too big for the buffer takes the reference loops reading through the table.
 * Elsewhere everything is plain C. */
#include "tp_lowbit.h"

#include <string.h>

#include "tp_kernels.h"
#include "tp_ref.h"
#include "tp_shadow.h"

#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#elif defined(TP_FAST) && defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* 1 when one of the n values at p lies below lo or above hi; lo == -128 (hi == 127) drops that side */
static int row_outside(const int8_t *p, int n, int lo, int hi)
{
    int i = 0;
#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
    int8x16_t vmax = vdupq_n_s8(-128), vmin = vdupq_n_s8(127);
    if (lo == -128) /* one side: a load and a lane max per 16 values */
        for (; i + 16 <= n; i += 16) vmax = vmaxq_s8(vmax, vldrbq_s8(p + i));
    else
        for (; i + 16 <= n; i += 16) { /* running lane extremes, one reduction per row */
            const int8x16_t v = vldrbq_s8(p + i);
            vmax = vmaxq_s8(vmax, v);
            vmin = vminq_s8(vmin, v);
        }
    if (i < n) { /* the tail, predicated */
        const mve_pred16_t m = vctp8q((uint32_t)(n - i));
        const int8x16_t v = vldrbq_z_s8(p + i, m);
        vmax = vmaxq_m_s8(vmax, vmax, v, m);
        vmin = vminq_m_s8(vmin, vmin, v, m);
    }
    return (hi < 127 && vmaxvq_s8(-128, vmax) > hi) || (lo > -128 && vminvq_s8(127, vmin) < lo);
#elif defined(TP_FAST) && defined(__ARM_FEATURE_DSP)
    if (n >= 8) {
        /* SSUB8 sets a byte's GE flag where the (unwrapped) signed difference is >= 0; SEL keeps it */
        const uint32_t h = 0x01010101u * (uint8_t)(hi + 1), l = 0x01010101u * (uint8_t)(lo - 1);
        uint32_t seen = 0, v, u;
        if (lo == -128) { /* one side: 3 instructions per 4 values */
            for (; i + 8 <= n; i += 8) {
                memcpy(&v, p + i, 4);
                memcpy(&u, p + i + 4, 4);
                (void)__ssub8(v, h); /* GE: v >= hi + 1 */
                seen = __sel(~0u, seen);
                (void)__ssub8(u, h);
                seen = __sel(~0u, seen);
            }
        } else {
            for (; i + 8 <= n; i += 8) {
                memcpy(&v, p + i, 4);
                memcpy(&u, p + i + 4, 4);
                if (hi < 127) {
                    (void)__ssub8(v, h);
                    seen = __sel(~0u, seen);
                    (void)__ssub8(u, h);
                    seen = __sel(~0u, seen);
                }
                (void)__ssub8(l, v); /* GE: v <= lo - 1 */
                seen = __sel(~0u, seen);
                (void)__ssub8(l, u);
                seen = __sel(~0u, seen);
            }
        }
        if (seen) return 1;
    }
#endif
    for (; i < n; i++) {
        const int v = TP_RD(p[i]);
        if (v < lo || v > hi) return 1;
    }
    return 0;
}

int tp_lb_outside(const int8_t *x, int h, int n, int rs, int lo, int hi)
{
    if (lo <= -128 && hi >= 127) return 0;
    if (rs == n) { /* contiguous rows: one run */
        n *= h;
        h = 1;
    }
    for (int r = 0; r < h; r++)
        if (row_outside(x + (ptrdiff_t)r * rs, n, lo < -128 ? -128 : lo, hi > 127 ? 127 : hi)) return 1;
    return 0;
}

/* dst[i] = t[src[i]] (t: a table centred on value 0), n values; src may be dst */
static void lut_copy(const int8_t *t, const int8_t *src, int8_t *dst, int n)
{
    int i = 0;
#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
    const uint8_t *base = (const uint8_t *)(t - 128);
    const uint8x16_t bias = vdupq_n_u8(0x80);
    for (; i + 16 <= n; i += 16) /* 16 table reads per gather load */
        vstrbq_u8((uint8_t *)dst + i, vldrbq_gather_offset_u8(base, veorq_u8(vldrbq_u8((const uint8_t *)src + i), bias)));
    if (i < n) { /* the tail, predicated */
        const mve_pred16_t m = vctp8q((uint32_t)(n - i));
        const uint8x16_t u = veorq_u8(vldrbq_z_u8((const uint8_t *)src + i, m), bias);
        vstrbq_p_u8((uint8_t *)dst + i, vldrbq_gather_offset_z_u8(base, u, m), m);
        i = n;
    }
#elif defined(TP_FAST) && defined(__ARM_FEATURE_DSP)
    const uint8_t *base = (const uint8_t *)t; /* indexed by the signed value */
    for (; i + 4 <= n; i += 4) { /* one load and one store per 4 values */
        int32_t v;
        memcpy(&v, src + i, 4);
        const uint32_t r = (uint32_t)base[(int8_t)v] | (uint32_t)base[(int8_t)(v >> 8)] << 8
                           | (uint32_t)base[(int8_t)(v >> 16)] << 16 | (uint32_t)base[v >> 24] << 24;
        memcpy(dst + i, &r, 4);
    }
#endif
    for (; i < n; i++) TP_WR(dst[i], t[TP_RD(src[i])]);
}

void tp_lb_apply(const int8_t *lut, int8_t *x, int h, int n, int rs)
{
    if (rs == n) { /* contiguous rows: one run */
        n *= h;
        h = 1;
    }
    for (int r = 0; r < h; r++) lut_copy(lut + 128, x + (ptrdiff_t)r * rs, x + (ptrdiff_t)r * rs, n);
}

#if !(defined(TP_FAST) && defined(__ARM_FEATURE_MVE))
/* q <- min(zp + ((max(q - zp, 0) + r) & -2^s), 127), r = 2^(s-1), s >= 1, in unsigned bytes that never
 * wrap (u = q + 128, z = zp + 128): d = u - z saturating at 0 (UQSUB8), the rounded grid value halved
 * ((d + r) >> 1 by a halving add, UHADD8, masked), doubled saturating at 255 (UQADD8 with itself),
 * z added saturating at 255 (UQADD8); dst[i] = that of src[i], n values, src may be dst */
static void grid_copy(const int8_t *src, int8_t *dst, int n, int zp, int s)
{
    const int z = zp + 128, r = 1 << (s - 1), m = (0x1ff & ~((1 << s) - 1)) >> 1; /* 2h: 9 bits */
    int i = 0;
#if defined(TP_FAST) && defined(__ARM_FEATURE_DSP)
    const uint32_t rr = 0x01010101u * (uint8_t)r, mm = 0x01010101u * (uint8_t)m, zz = 0x01010101u * (uint8_t)z;
    for (; i + 4 <= n; i += 4) { /* 9 instructions per 4 values */
        uint32_t v;
        memcpy(&v, src + i, 4);
        v = __uhadd8(__uqsub8(v ^ 0x80808080u, zz), rr) & mm;
        v = __uqadd8(__uqadd8(v, v), zz) ^ 0x80808080u;
        memcpy(dst + i, &v, 4);
    }
#endif
    for (; i < n; i++) {
        const int d = TP_RD(src[i]) + 128 - z, h = (((d > 0 ? d : 0) + r) >> 1) & m, w = 2 * h > 255 ? 255 : 2 * h;
        TP_WR(dst[i], (int8_t)((w + z > 255 ? 255 : w + z) - 128));
    }
}
#endif

/* the grid values of n values: on Cortex-M55 through the table (a Helium gather load reads 16 entries,
 * fewer instructions than the byte steps), elsewhere by the byte steps where shift >= 1 */
static void map_copy(const int8_t *lut, int zp, int shift, const int8_t *src, int8_t *dst, int n)
{
#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
    (void)zp;
    (void)shift;
    lut_copy(lut + 128, src, dst, n);
#else
    if (shift >= 1)
        grid_copy(src, dst, n, zp, shift);
    else
        lut_copy(lut + 128, src, dst, n);
#endif
}

void tp_lb_grid(const int8_t *lut, int8_t *x, int h, int n, int rs, int zp, int shift)
{
    if (rs == n) { /* contiguous rows: one run */
        n *= h;
        h = 1;
    }
    for (int r = 0; r < h; r++) map_copy(lut, zp, shift, x + (ptrdiff_t)r * rs, x + (ptrdiff_t)r * rs, n);
}

static void spatial(int kind, const void *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl, int8_t *y,
                    int oh, int ow, int ors)
{
    switch (kind) {
    case TP_LB_CONV: tp_conv_s8((const tp_conv_p *)p, x, ih, iw, irs, pt, pl, y, oh, ow, ors); break;
    case TP_LB_DWCONV: tp_dwconv_s8((const tp_conv_p *)p, x, ih, iw, irs, pt, pl, y, oh, ow, ors); break;
    case TP_LB_AVGPOOL: tp_avgpool_s8((const tp_pool_p *)p, x, ih, iw, irs, pt, pl, y, oh, ow, ors); break;
    default: tp_maxpool_s8((const tp_pool_p *)p, x, ih, iw, irs, pt, pl, y, oh, ow, ors); break;
    }
}

void tp_lb_spatial(int kind, const void *p, const int8_t *lut, const tp_lb_geom *g, const int8_t *x, int ih, int iw,
                   int irs, int pt, int pl, int8_t *y, int oh, int ow, int ors)
{
    int8_t buf[TP_LB_GATHER] TP_ALIGN(4);
    const int span_h = (g->kh - 1) * g->dh + 1, span_w = (g->kw - 1) * g->dw + 1;
    for (int oy = 0; oy < oh; oy++) {
        const int r0 = oy * g->sh - pt;
        const int a0 = r0 < 0 ? 0 : r0, a1 = r0 + span_h > ih ? ih : r0 + span_h;
        const int rows = a1 - a0;
        /* output columns per gathered chunk: its input columns times rows times channels fit buf */
        const int cols_max = TP_LB_GATHER / ((rows > 0 ? rows : 1) * g->c);
        const int step = cols_max >= span_w ? (cols_max - span_w) / g->sw + 1 : 1;
        for (int ox0 = 0; ox0 < ow; ox0 += step) {
            const int ox1 = ox0 + step < ow ? ox0 + step : ow;
            const int c0 = ox0 * g->sw - pl, c1 = (ox1 - 1) * g->sw - pl + span_w;
            const int b0 = c0 < 0 ? 0 : c0, b1 = c1 > iw ? iw : c1;
            const int n = (b1 - b0) * g->c;
            for (int r = 0; r < rows; r++)
                map_copy(lut, g->zp, g->shift, x + (ptrdiff_t)(a0 + r) * irs + (ptrdiff_t)b0 * g->c, buf + r * n, n);
            spatial(kind, p, buf, rows, b1 - b0, n, a0 - r0, b0 - c0, y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox0 * g->oc,
                    1, ox1 - ox0, ors);
        }
    }
}


/* write-ahead: 1 output pixel (the reference kernels' order) */
/* a lowered input value, read through the table t (the reference loops of tp_ref.h) */
#define TP_LB_LOAD(v) t[TP_RD(v)]

void tp_lb_conv_s8(const tp_conv_p *p, const int8_t *lut, const int8_t *x, int ih, int iw, int irs, int pt,
                   int pl, int8_t *y, int oh, int ow, int ors)
{
    const int8_t *t = lut + 128;
    TP_CONV_REF(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, TP_LB_LOAD);
}

void tp_lb_dwconv_s8(const tp_conv_p *p, const int8_t *lut, const int8_t *x, int ih, int iw, int irs, int pt,
                     int pl, int8_t *y, int oh, int ow, int ors)
{
    const int8_t *t = lut + 128;
    TP_DWCONV_REF(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, TP_LB_LOAD);
}
