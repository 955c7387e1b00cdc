/* Per-patch mixed precision: outlier test, low-bit requantization, spatial kernels reading a
 * lowered stage input (see tp_lowbit.h).
 * - outlier test: on Cortex-M4/M7 the running max and min of 4 values per 32-bit load (biased to
 *   unsigned, USUB8 + SEL); on Cortex-M55 of 16 values per tail-predicated Helium load (VMAXV/VMINV);
 * - requantization through the 256-entry table: on Cortex-M55 16 values per gather load (VLDRB with
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

/* the extremes of one row of n values, folded into *lo and *hi */
static void row_range(const int8_t *p, int n, int *lo, int *hi)
{
    int i = 0, l = *lo, h = *hi;
#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
    for (; i < n; i += 16) {
        const mve_pred16_t m = vctp8q((uint32_t)(n - i));
        const int8x16_t v = vldrbq_z_s8(p + i, m);
        h = vmaxvq_p_s8((int8_t)h, v, m);
        l = vminvq_p_s8((int8_t)l, v, m);
    }
#elif defined(TP_FAST) && defined(__ARM_FEATURE_DSP)
    if (n >= 4) {
        uint32_t vmax = 0, vmin = 0xffffffffu; /* values + 128, one per byte */
        for (; i + 4 <= n; i += 4) {
            uint32_t v;
            memcpy(&v, p + i, 4);
            v ^= 0x80808080u;
            (void)__usub8(v, vmax); /* GE where v >= vmax */
            vmax = __sel(v, vmax);
            (void)__usub8(vmin, v); /* GE where v <= vmin */
            vmin = __sel(v, vmin);
        }
        for (int b = 0; b < 32; b += 8) {
            const int a = (int)((vmax >> b) & 0xff) - 128, c = (int)((vmin >> b) & 0xff) - 128;
            h = a > h ? a : h;
            l = c < l ? c : l;
        }
    }
#endif
    for (; i < n; i++) {
        const int v = TP_RD(p[i]);
        h = v > h ? v : h;
        l = v < l ? v : l;
    }
    *lo = l;
    *hi = h;
}

int tp_lb_maxdev(const int8_t *x, int h, int n, int rs, int zp)
{
    if (h <= 0 || n <= 0) return 0;
    int lo = 127, hi = -128;
    for (int r = 0; r < h; r++) row_range(x + (ptrdiff_t)r * rs, n, &lo, &hi);
    const int a = hi - zp, b = zp - lo;
    return a > b ? a : b;
}

/* dst[i] = t[src[i]] (t: a table centred on value 0), n values; src may be dst */
static void lut_copy(const int8_t *t, const int8_t *src, int8_t *dst, int n)
{
    int i = 0;
#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
    const uint8_t *base = (const uint8_t *)(t - 128);
    for (; i < n; i += 16) { /* 16 table reads per gather load */
        const mve_pred16_t m = vctp8q((uint32_t)(n - i));
        const uint8x16_t u = veorq_u8(vldrbq_z_u8((const uint8_t *)src + i, m), vdupq_n_u8(0x80));
        vstrbq_p_u8((uint8_t *)dst + i, vldrbq_gather_offset_z_u8(base, u, m), m);
    }
#elif defined(TP_FAST) && defined(__ARM_FEATURE_DSP)
    const uint8_t *base = (const uint8_t *)(t - 128);
    for (; i + 4 <= n; i += 4) { /* one load and one store per 4 values */
        uint32_t v;
        memcpy(&v, src + i, 4);
        v ^= 0x80808080u;
        const uint32_t r = (uint32_t)base[v & 0xff] | (uint32_t)base[(v >> 8) & 0xff] << 8
                           | (uint32_t)base[(v >> 16) & 0xff] << 16 | (uint32_t)base[v >> 24] << 24;
        memcpy(dst + i, &r, 4);
    }
#endif
    for (; i < n; i++) TP_WR(dst[i], t[TP_RD(src[i])]);
}

void tp_lb_apply(const int8_t *lut, int8_t *x, int h, int n, int rs)
{
    for (int r = 0; r < h; r++) lut_copy(lut + 128, x + (ptrdiff_t)r * rs, x + (ptrdiff_t)r * rs, n);
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

/* n values through the table (g->top > 0: a table per pixel, chosen by its run-time step) */
static void gather(const int8_t *lut, const tp_lb_geom *g, const int8_t *src, int8_t *dst, int n)
{
    if (!g->top) {
        lut_copy(lut + 128, src, dst, n);
        return;
    }
    for (int i = 0; i < n; i += g->c)
        lut_copy(lut + 128 + 256 * tp_lb_pixel_shift(src + i, g->c, g->top, g->zp), src + i, dst + i, g->c);
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
                gather(lut, g, x + (ptrdiff_t)(a0 + r) * irs + (ptrdiff_t)b0 * g->c, buf + r * n, n);
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

int tp_lb_pixel_shift(const int8_t *p, int c, int top, int zp)
{
    int lo = 127, hi = -128, s = 0;
    row_range(p, c, &lo, &hi);
    const int dev = hi - zp > zp - lo ? hi - zp : zp - lo;
    while ((top << s) < dev) s++;
    return s;
}

void tp_lb_apply_px(const int8_t *luts, int top, int zp, int8_t *x, int h, int w, int c, int rs)
{
    for (int r = 0; r < h; r++)
        for (int j = 0; j < w; j++) {
            int8_t *p = x + (ptrdiff_t)r * rs + (ptrdiff_t)j * c;
            lut_copy(luts + 128 + 256 * tp_lb_pixel_shift(p, c, top, zp), p, p, c);
        }
}
