/* Optimised int8 kernels, bit-exact with the reference ones (tp_kernels.c).
 *
 * Written for tinypatch in the manner of CMSIS-NN (no code taken from it):
 * - dual 16-bit multiply-accumulates (SMLAD) on 4 int8 values per 32-bit load, sign-extended
 *   in pairs with SXTB16, on Cortex-M4/M7 (DSP extension); a portable C emulation of the same
 *   operations elsewhere, so host builds (and their sanitizers) test the same algorithm;
 * - convolution: 2 output pixels x 2 output channels per pass over each kernel row, which is
 *   contiguous in NHWC (dilation 1); the input zero point is folded into the bias for pixels
 *   whose window lies inside the input, and subtracted (SSUB16) at the borders;
 * - depthwise: 4 channels per 32-bit load, one 16x16 MAC per lane (SMLABB/SMLATT);
 * - requantization with SMMULR and an add-and-shift rounding (see tp_rq).
 * Helium (Cortex-M55) versions are in tp_fast_mve.c. */
#include "tp_fast.h"
#include "tp_shadow.h"
#include "tp_fast_mve.h"

#if defined(TP_FAST)
#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
static inline int32_t lo16x2(uint32_t x) { return __sxtb16((int32_t)x); }    /* bytes 0, 2 */
static inline int32_t hi16x2(uint32_t x)                                     /* bytes 1, 3 */
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t dual_mac(int32_t a, int32_t b, int32_t acc) { return __smlad(a, b, acc); }
static inline int32_t sub16x2(int32_t a, int32_t b) { return __ssub16(a, b); }
static inline int32_t mac_bb(int32_t a, int32_t b, int32_t acc) { return __smlabb(a, b, acc); }
static inline int32_t mac_tt(int32_t a, int32_t b, int32_t acc) { return __smlatt(a, b, acc); }
static inline int32_t mulhr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else /* portable emulation: the same lane arithmetic in C (wrapping like the instructions) */
static inline int32_t lane0(int32_t v) { return (int16_t)(uint16_t)(uint32_t)v; }
static inline int32_t lane1(int32_t v) { return (int16_t)(uint16_t)((uint32_t)v >> 16); }
static inline int32_t lanes(int32_t l0, int32_t l1)
{
    return (int32_t)((uint32_t)(uint16_t)l0 | ((uint32_t)(uint16_t)l1 << 16));
}
static inline int32_t lo16x2(uint32_t x) { return lanes((int8_t)(x & 0xff), (int8_t)((x >> 16) & 0xff)); }
static inline int32_t hi16x2(uint32_t x) { return lanes((int8_t)((x >> 8) & 0xff), (int8_t)(x >> 24)); }
static inline int32_t dual_mac(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(lane0(a) * lane0(b)) + (uint32_t)(lane1(a) * lane1(b)));
}
static inline int32_t sub16x2(int32_t a, int32_t b) { return lanes(lane0(a) - lane0(b), lane1(a) - lane1(b)); }
static inline int32_t mac_bb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(lane0(a) * lane0(b)));
}
static inline int32_t mac_tt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(lane1(a) * lane1(b)));
}
static inline int32_t mulhr(int32_t a, int32_t b) { return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32); }
#endif

static inline uint32_t ld32(const int8_t *p)
{
    uint32_t v;
#if defined(TP_SHADOW)
    tp_shadow_read(p, 4);
#endif
    memcpy(&v, p, 4); /* one (unaligned) LDR on Cortex-M4/M7 */
    return v;
}

static inline int8_t requant(int32_t acc, const tp_rq *q, int zp, int lo, int hi)
{
    int32_t v = mulhr((int32_t)((uint32_t)acc << q->lsh), q->mult);
    v = (v + q->rnd + ((v >> 31) & q->nmask)) >> q->rsh;
    v += zp;
    v = v > hi ? hi : v; /* this order compiles without branches */
    v = v < lo ? lo : v;
    return (int8_t)v;
}

#define TP_INLINE static inline __attribute__((always_inline))

/* s[2 * pixel + channel] += sum_k w_channel[k] * (x_pixel[k] - zp), k < n, for the pixels at x0
 * and (two) x0 + xstep and the channels at w0 and w0 + wstep. zp2 holds zp in both 16-bit lanes;
 * sub = 0 leaves the zero point out (it is folded into the bias). two, sub: constants after inlining. */
TP_INLINE void dot22(const int8_t *x0, int xstep, const int8_t *w0, int wstep, int n, int zp, int32_t zp2,
                     const int two, const int sub, int32_t *s)
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
    const int8_t *end = x0 + (n & ~3);
    while (x0 < end) {
        const uint32_t xa = ld32(x0), wa = ld32(w0);
        int32_t xa0 = lo16x2(xa), xa1 = hi16x2(xa);
        if (sub) {
            xa0 = sub16x2(xa0, zp2);
            xa1 = sub16x2(xa1, zp2);
        }
        const int32_t wa0 = lo16x2(wa), wa1 = hi16x2(wa);
        s00 = dual_mac(xa0, wa0, s00);
        s00 = dual_mac(xa1, wa1, s00);
        const uint32_t wb = ld32(w0 + wstep);
        const int32_t wb0 = lo16x2(wb), wb1 = hi16x2(wb);
        s01 = dual_mac(xa0, wb0, s01);
        s01 = dual_mac(xa1, wb1, s01);
        if (two) {
            const uint32_t xb = ld32(x0 + xstep);
            int32_t xb0 = lo16x2(xb), xb1 = hi16x2(xb);
            if (sub) {
                xb0 = sub16x2(xb0, zp2);
                xb1 = sub16x2(xb1, zp2);
            }
            s10 = dual_mac(xb0, wa0, s10);
            s10 = dual_mac(xb1, wa1, s10);
            s11 = dual_mac(xb0, wb0, s11);
            s11 = dual_mac(xb1, wb1, s11);
        }
        x0 += 4;
        w0 += 4;
    }
    const int z = sub ? zp : 0;
    for (int k = n & 3; k > 0; k--, x0++, w0++) {
        const int a = TP_RD(x0[0]) - z, u = w0[0], v = w0[wstep];
        s00 += a * u;
        s01 += a * v;
        if (two) {
            const int b = TP_RD(x0[xstep]) - z;
            s10 += b * u;
            s11 += b * v;
        }
    }
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}

/* 1x1 convolution of two pixels (their cin values at x0 and x1), every output channel: a 2 x cout
 * block of a matrix product, 2 pixels x 2 channels per pass, the zero point folded into the bias. */
static void gemm_2px(const int8_t *x0, const int8_t *x1, const int8_t *w, int k, int cout, const tp_rq *rq,
                     int8_t *y0, int8_t *y1, int zp, int lo, int hi)
{
    int oc = 0;
    for (; oc + 1 < cout; oc += 2, w += 2 * k, rq += 2) {
        int32_t s00 = rq[0].bias, s10 = s00, s01 = rq[1].bias, s11 = s01;
        const int8_t *a = x0, *b = x1, *u = w, *v = w + k;
        for (int i = k >> 2; i > 0; i--) {
            const uint32_t xa = ld32(a), wa = ld32(u);
            a += 4;
            u += 4;
            const int32_t xa0 = lo16x2(xa), xa1 = hi16x2(xa), wa0 = lo16x2(wa), wa1 = hi16x2(wa);
            s00 = dual_mac(xa0, wa0, s00);
            s00 = dual_mac(xa1, wa1, s00);
            const uint32_t xb = ld32(b);
            b += 4;
            const int32_t xb0 = lo16x2(xb), xb1 = hi16x2(xb);
            s10 = dual_mac(xb0, wa0, s10);
            s10 = dual_mac(xb1, wa1, s10);
            const uint32_t wb = ld32(v);
            v += 4;
            const int32_t wb0 = lo16x2(wb), wb1 = hi16x2(wb);
            s01 = dual_mac(xa0, wb0, s01);
            s01 = dual_mac(xa1, wb1, s01);
            s11 = dual_mac(xb0, wb0, s11);
            s11 = dual_mac(xb1, wb1, s11);
        }
        for (int i = k & 3; i > 0; i--) {
            const int p = TP_RD(a[0]), q = TP_RD(b[0]), r = *u++, t = *v++;
            a++;
            b++;
            s00 += p * r;
            s01 += p * t;
            s10 += q * r;
            s11 += q * t;
        }
        TP_WR(y0[oc], requant(s00, &rq[0], zp, lo, hi));
        TP_WR(y1[oc], requant(s10, &rq[0], zp, lo, hi));
        TP_WR(y0[oc + 1], requant(s01, &rq[1], zp, lo, hi));
        TP_WR(y1[oc + 1], requant(s11, &rq[1], zp, lo, hi));
    }
    if (oc < cout) { /* odd channel count */
        int32_t s0 = rq[0].bias, s1 = s0;
        for (int i = 0; i < k; i++) {
            s0 += w[i] * TP_RD(x0[i]);
            s1 += w[i] * TP_RD(x1[i]);
        }
        TP_WR(y0[oc], requant(s0, &rq[0], zp, lo, hi));
        TP_WR(y1[oc], requant(s1, &rq[0], zp, lo, hi));
    }
}

/* 1x1 convolution of one pixel (its cin values at x0), every output channel, 2 channels per pass. */
static void gemm_1px(const int8_t *x0, const int8_t *w, int k, int cout, const tp_rq *rq, int8_t *y0, int zp,
                     int lo, int hi)
{
    int oc = 0;
    for (; oc + 1 < cout; oc += 2, w += 2 * k, rq += 2) {
        int32_t s0 = rq[0].bias, s1 = rq[1].bias;
        const int8_t *a = x0, *u = w, *v = w + k;
        for (int i = k >> 2; i > 0; i--) {
            const uint32_t xa = ld32(a), wa = ld32(u), wb = ld32(v);
            a += 4;
            u += 4;
            v += 4;
            const int32_t xa0 = lo16x2(xa), xa1 = hi16x2(xa);
            s0 = dual_mac(xa0, lo16x2(wa), s0);
            s0 = dual_mac(xa1, hi16x2(wa), s0);
            s1 = dual_mac(xa0, lo16x2(wb), s1);
            s1 = dual_mac(xa1, hi16x2(wb), s1);
        }
        for (int i = k & 3; i > 0; i--) {
            const int q = *a++;
            s0 += q * *u++;
            s1 += q * *v++;
        }
        y0[oc] = requant(s0, &rq[0], zp, lo, hi);
        y0[oc + 1] = requant(s1, &rq[1], zp, lo, hi);
    }
    if (oc < cout) { /* odd channel count */
        int32_t s0 = rq[0].bias;
        for (int i = 0; i < k; i++) s0 += w[i] * x0[i];
        y0[oc] = requant(s0, &rq[0], zp, lo, hi);
    }
}

/* 1x1 convolution (no padding: a 1x1 window never reads outside its input). Out of place, the
 * pixels pair up in raster order across row ends, so odd row widths and one-column calls (tiles,
 * stream steps) keep the two-pixel pass; in place, pairs stay inside a row (the write order the
 * in-place shift assumes, see analysis/inplace_shift.py). */
static void conv_1x1(const tp_conv_p *p, const int8_t *x, int irs, int8_t *y, int oh, int ow, int ors)
{
    const int cin = p->cin, cout = p->cout, sh = p->sh, sw = p->sw;
    if (!p->inplace && ow & 1) {
        const int8_t *xr = x;
        int8_t *yr = y;
        const int8_t *x0 = NULL;
        int8_t *y0 = NULL;
        for (int oy = 0; oy < oh; oy++, xr += (ptrdiff_t)sh * irs, yr += ors) {
            for (int ox = 0; ox < ow; ox++) {
                const int8_t *xp = xr + (ptrdiff_t)ox * sw * cin;
                int8_t *yp = yr + (ptrdiff_t)ox * cout;
                if (x0 == NULL) {
                    x0 = xp;
                    y0 = yp;
                } else {
                    gemm_2px(x0, xp, p->w, cin, cout, p->rq, y0, yp, p->out_zp, p->act_min, p->act_max);
                    x0 = NULL;
                }
            }
        }
        if (x0 != NULL) gemm_1px(x0, p->w, cin, cout, p->rq, y0, p->out_zp, p->act_min, p->act_max);
        return;
    }
    for (int oy = 0; oy < oh; oy++) {
        const int8_t *xr = x + (ptrdiff_t)oy * sh * irs;
        int8_t *yr = y + (ptrdiff_t)oy * ors;
        for (int ox = 0; ox < ow; ox += 2) {
            const int8_t *x0 = xr + (ptrdiff_t)ox * sw * cin;
            int8_t *y0 = yr + (ptrdiff_t)ox * cout;
            if (ox + 1 < ow)
                gemm_2px(x0, x0 + sw * cin, p->w, cin, cout, p->rq, y0, y0 + cout, p->out_zp, p->act_min, p->act_max);
            else
                gemm_1px(x0, p->w, cin, cout, p->rq, y0, p->out_zp, p->act_min, p->act_max);
        }
    }
}

/* All channels of output pixels ox0 and ox0 + 1 (two = 1) or ox0 alone (two = 0) of row oy, whose
 * windows cover kernel rows [ky0, ky1) and columns [kx0, kx1); sub: a window reaches into the
 * zero padding, so the zero point is subtracted instead of folded into the bias. */
TP_INLINE void conv_pixels(const tp_conv_p *p, const int8_t *x, int irs, int iy0, int ix0, int ky0, int ky1,
                           int kx0, int kx1, int8_t *out0, const int two, const int sub)
{
    /* locals: the output stores may alias anything (-fno-strict-aliasing), fields would be reloaded */
    const int cin = p->cin, cout = p->cout, kw = p->kw, ktotal = p->kh * kw * cin, in_zp = p->in_zp;
    const int zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const tp_rq *rq = p->rq;
    const int32_t *bias = p->bias;
    const int8_t *w = p->w + (ky0 * kw + kx0) * cin;
    const int n = (kx1 - kx0) * cin;
    const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)in_zp << 16) | (uint16_t)in_zp);
    const int xstep = two ? p->sw * cin : 0;
    int8_t *out1 = out0 + (two ? cout : 0);
    const int8_t *xw = x + (ptrdiff_t)(iy0 + ky0) * irs + (ptrdiff_t)(ix0 + kx0) * cin;
    for (int oc = 0; oc < cout; oc += 2, w += 2 * ktotal) {
        const int oc1 = oc + 1 < cout ? oc + 1 : oc;
        const int wstep = (oc1 - oc) * ktotal;
        int32_t s[4];
        if (sub) {
            s[0] = s[2] = bias ? bias[oc] : 0;
            s[1] = s[3] = bias ? bias[oc1] : 0;
        } else {
            s[0] = s[2] = rq[oc].bias;
            s[1] = s[3] = rq[oc1].bias;
        }
        const int8_t *xr = xw, *wr = w;
        for (int ky = ky0; ky < ky1; ky++, xr += irs, wr += kw * cin) dot22(xr, xstep, wr, wstep, n, in_zp, zp2, two, sub, s);
        TP_WR(out0[oc], requant(s[0], &rq[oc], zp, lo, hi));
        if (two) TP_WR(out1[oc], requant(s[2], &rq[oc], zp, lo, hi));
        if (oc1 != oc) {
            TP_WR(out0[oc1], requant(s[1], &rq[oc1], zp, lo, hi));
            if (two) TP_WR(out1[oc1], requant(s[3], &rq[oc1], zp, lo, hi));
        }
    }
}

/* write-ahead: 2 output pixels (conv_pixels / gemm_2px: two pixels channel pair by channel pair).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
int tp_fast_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                    int8_t *y, int oh, int ow, int ors)
{
#if defined(__ARM_FEATURE_MVE)
    if (tp_mve_conv_s8(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors)) return 1;
#endif
    if (!p->rq || p->dh != 1 || p->dw != 1) return 0;
    const int kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, cout = p->cout;
    if (kh == 1 && kw == 1 && pt == 0 && pl == 0) {
        conv_1x1(p, x, irs, y, oh, ow, ors);
        return 1;
    }
    for (int oy = 0; oy < oh; oy++) {
        const int iy0 = oy * sh - pt;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + kh > ih ? ih - iy0 : kh;
        int8_t *row = y + (ptrdiff_t)oy * ors;
        int ox = 0;
        while (ox < ow) {
            const int ix0 = ox * sw - pl;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + kw > iw ? iw - ix0 : kw;
            /* two pixels share a pass when both windows lie inside the input columns */
            const int two = ox + 1 < ow && ix0 >= 0 && ix0 + sw + kw <= iw;
            int8_t *out = row + (ptrdiff_t)ox * cout;
            const int sub = ky0 > 0 || ky1 < kh || kx0 > 0 || kx1 < kw;
            if (two && sub)
                conv_pixels(p, x, irs, iy0, ix0, ky0, ky1, kx0, kx1, out, 1, 1);
            else if (two)
                conv_pixels(p, x, irs, iy0, ix0, 0, kh, 0, kw, out, 1, 0);
            else if (sub)
                conv_pixels(p, x, irs, iy0, ix0, ky0, ky1, kx0, kx1, out, 0, 1);
            else
                conv_pixels(p, x, irs, iy0, ix0, 0, kh, 0, kw, out, 0, 0);
            ox += two ? 2 : 1;
        }
    }
    return 1;
}

/* All channels of one depthwise output pixel: a = bias + sum over the window's taps (rows x cols
 * starting at xp, whose weights start at wp) of w * (x - zp) (sub) or of w * x (zero point folded
 * into the bias), 4 channels per 32-bit load. kw, rows, cols are constants for 3x3 after inlining. */
TP_INLINE void dw_pixel(const tp_conv_p *p, const int8_t *xp, int irs, const int8_t *wp, int kw, int rows, int cols,
                        int8_t *out, const int sub)
{
    const int c = p->cout, zp = p->in_zp, out_zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)zp << 16) | (uint16_t)zp);
    const tp_rq *rq = p->rq;
    const int32_t *bias = p->bias;
    int ch = 0;
    for (; ch + 4 <= c; ch += 4, rq += 4) {
        int32_t a0, a1, a2, a3;
        if (sub) {
            a0 = bias ? bias[ch] : 0;
            a1 = bias ? bias[ch + 1] : 0;
            a2 = bias ? bias[ch + 2] : 0;
            a3 = bias ? bias[ch + 3] : 0;
        } else {
            a0 = rq[0].bias;
            a1 = rq[1].bias;
            a2 = rq[2].bias;
            a3 = rq[3].bias;
        }
        const int8_t *xr = xp + ch, *wr = wp + ch;
#pragma GCC unroll 3
        for (int r = 0; r < rows; r++, xr += irs, wr += kw * c) {
#pragma GCC unroll 3
            for (int t = 0; t < cols; t++) {
                const uint32_t xw = ld32(xr + t * c), ww = ld32(wr + t * c);
                int32_t xl = lo16x2(xw), xh = hi16x2(xw);
                if (sub) {
                    xl = sub16x2(xl, zp2);
                    xh = sub16x2(xh, zp2);
                }
                const int32_t wl = lo16x2(ww), wh = hi16x2(ww);
                a0 = mac_bb(xl, wl, a0);
                a2 = mac_tt(xl, wl, a2);
                a1 = mac_bb(xh, wh, a1);
                a3 = mac_tt(xh, wh, a3);
            }
        }
        TP_WR(out[ch], requant(a0, &rq[0], out_zp, lo, hi));
        TP_WR(out[ch + 1], requant(a1, &rq[1], out_zp, lo, hi));
        TP_WR(out[ch + 2], requant(a2, &rq[2], out_zp, lo, hi));
        TP_WR(out[ch + 3], requant(a3, &rq[3], out_zp, lo, hi));
    }
    for (; ch < c; ch++, rq++) { /* remaining channels */
        int32_t a = sub ? (bias ? bias[ch] : 0) : rq->bias;
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < cols; t++) {
                const int v = TP_RD(xp[(ptrdiff_t)r * irs + (ptrdiff_t)t * c + ch]);
                a += wp[(r * kw + t) * c + ch] * (sub ? v - zp : v);
            }
        TP_WR(out[ch], requant(a, rq, out_zp, lo, hi));
    }
}

/* write-ahead: 1 output pixel (dw_pixel: one pixel, channel by channel).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
int tp_fast_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                      int8_t *y, int oh, int ow, int ors)
{
#if defined(__ARM_FEATURE_MVE)
    if (tp_mve_dwconv_s8(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors)) return 1;
#endif
    if (!p->rq || p->dm != 1 || p->dh != 1 || p->dw != 1) return 0;
    const int c = p->cout, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw;
    for (int oy = 0; oy < oh; oy++) {
        const int iy0 = oy * sh - pt;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + kh > ih ? ih - iy0 : kh;
        int8_t *row = y + (ptrdiff_t)oy * ors;
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * sw - pl;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + kw > iw ? iw - ix0 : kw;
            const int8_t *xp = x + (ptrdiff_t)(iy0 + ky0) * irs + (ptrdiff_t)(ix0 + kx0) * c;
            int8_t *out = row + (ptrdiff_t)ox * c;
            if (ky0 > 0 || ky1 < kh || kx0 > 0 || kx1 < kw)
                dw_pixel(p, xp, irs, p->w + (ky0 * kw + kx0) * c, kw, ky1 - ky0, kx1 - kx0, out, 1);
            else if (kh == 3 && kw == 3)
                dw_pixel(p, xp, irs, p->w, 3, 3, 3, out, 0);
            else
                dw_pixel(p, xp, irs, p->w, kw, kh, kw, out, 0);
        }
    }
    return 1;
}
/* Transpose convolution, gathered per output pixel: pixels ox and ox + sw of a row read the same
 * taps from adjacent input pixels, so they share a pass (dot22 with xstep = cin), 2 output
 * channels per pass; the zero point is subtracted (SSUB16): which taps land depends on the pixel. */
TP_INLINE void tconv_taps(const int8_t *xa, const int8_t *xb, const int8_t *w, int wstep, int n, int zp,
                          int32_t zp2, int32_t *s)
{
    if (xa && xb) {
        dot22(xa, (int)(xb - xa), w, wstep, n, zp, zp2, 1, 1, s);
    } else if (xa) {
        dot22(xa, 0, w, wstep, n, zp, zp2, 0, 1, s);
    } else if (xb) {
        int32_t t[4] = {s[2], s[3], 0, 0};
        dot22(xb, 0, w, wstep, n, zp, zp2, 0, 1, t);
        s[2] = t[0];
        s[3] = t[1];
    }
}

static inline int8_t tconv_requant(const tp_conv_p *p, int32_t acc, int oc)
{
    return requant(acc, &p->rq[oc], p->out_zp, p->act_min, p->act_max); /* bias not folded: rq[oc].bias unused */
}

#define TP_TCONV_TAPS 64 /* most (ky, kx) taps one output pixel may gather on the fast path */

/* noinline: its tap tables stay off the stack while the Helium version runs */
static __attribute__((noinline)) int tconv_dsp(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0,
                                               int ix0, int oyp, int oxp, int8_t *y, int oh, int ow, int ors)
{
    const int cin = p->cin, cout = p->cout, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, zp = p->in_zp;
    if (!p->rq || kh * kw > TP_TCONV_TAPS) return 0;
    const int32_t zp2 = (int32_t)(((uint32_t)(uint16_t)zp << 16) | (uint16_t)zp);
    const int ktaps = kh * kw * cin;
    const int8_t *xa[TP_TCONV_TAPS], *xb[TP_TCONV_TAPS];
    int woff[TP_TCONV_TAPS];
    for (int oy = 0; oy < oh; oy++) {
        int8_t *row = y + (ptrdiff_t)oy * ors;
        for (int ox = 0; ox < ow; ox++) {
            /* pixel ox pairs with ox + sw unless that one was (or will be) done with ox - sw */
            if ((ox / sw) % 2) continue;
            const int two = ox + sw < ow;
            int n = 0; /* the taps landing on either pixel, with their input pixels (NULL: none) */
            for (int ky = 0; ky < kh; ky++) {
                const int ty = oyp + oy - ky;
                if (ty < 0 || ty % sh) continue;
                const int iy = ty / sh - iy0;
                if (iy < 0 || iy >= ih) continue;
                const int8_t *xr = x + (ptrdiff_t)iy * irs;
                for (int kx = 0; kx < kw; kx++) {
                    const int tx = oxp + ox - kx;
                    if (tx < -sw || (tx + sw) % sw) continue;
                    const int ix = (tx + sw) / sw - 1 - ix0; /* pixel ox reads ix, pixel ox + sw reads ix + 1 */
                    xa[n] = tx >= 0 && ix >= 0 && ix < iw ? xr + (ptrdiff_t)ix * cin : NULL;
                    xb[n] = two && ix + 1 >= 0 && ix + 1 < iw ? xr + (ptrdiff_t)(ix + 1) * cin : NULL;
                    woff[n] = (ky * kw + kx) * cin;
                    n += xa[n] || xb[n];
                }
            }
            int8_t *outa = row + (ptrdiff_t)ox * cout, *outb = row + (ptrdiff_t)(ox + sw) * cout;
            for (int oc = 0; oc < cout; oc += 2) {
                const int oc1 = oc + 1 < cout ? oc + 1 : oc;
                int32_t s[4];
                s[0] = s[2] = p->bias ? p->bias[oc] : 0;
                s[1] = s[3] = p->bias ? p->bias[oc1] : 0;
                const int8_t *w = p->w + (ptrdiff_t)oc * ktaps;
                for (int t = 0; t < n; t++) tconv_taps(xa[t], xb[t], w + woff[t], (oc1 - oc) * ktaps, cin, zp, zp2, s);
                outa[oc] = tconv_requant(p, s[0], oc);
                if (oc1 != oc) outa[oc1] = tconv_requant(p, s[1], oc1);
                if (two) {
                    outb[oc] = tconv_requant(p, s[2], oc);
                    if (oc1 != oc) outb[oc1] = tconv_requant(p, s[3], oc1);
                }
            }
        }
    }
    return 1;
}

int tp_fast_tconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0, int oyp,
                     int oxp, int8_t *y, int oh, int ow, int ors)
{
#if defined(__ARM_FEATURE_MVE)
    if (tp_mve_tconv_s8(p, x, ih, iw, irs, iy0, ix0, oyp, oxp, y, oh, ow, ors)) return 1;
#endif
    return tconv_dsp(p, x, ih, iw, irs, iy0, ix0, oyp, oxp, y, oh, ow, ors);
}
#else
typedef int tp_fast_disabled; /* built without -DTP_FAST: reference kernels only */
#endif
