/* tinypatch portable kernels (see tp_kernels.h). Each one reproduces the integer arithmetic of
 * TFLite's reference kernel bit for bit, as tinypatch's numpy kernels do. Accumulators are
 * int32 like the reference code; a sum that overflows int32 would wrap there too. */
#include "tp_kernels.h"
#include "tp_ref.h"

#include <string.h>

#include "tp_fast.h"

/* --- fixed point ---------------------------------------------------------------------- */
int32_t tp_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t s = (int64_t)a * (int64_t)b;
    s += s >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)(s >= 0 ? s >> 31 : -((-s) >> 31)); /* division truncating toward zero */
}

static int64_t rdbpot64(int64_t x, int exponent)
{
    const int64_t mask = (exponent >= 63) ? INT64_MAX : (((int64_t)1 << exponent) - 1);
    const int64_t remainder = x & mask;
    const int64_t threshold = (mask >> 1) + (x < 0);
    return (exponent >= 63 ? (x < 0 ? -1 : 0) : (x >> exponent)) + (remainder > threshold);
}

int32_t tp_rdbpot(int32_t x, int exponent)
{
    if (exponent > 31) return (int32_t)rdbpot64(x, exponent);
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> exponent) + (remainder > threshold);
}

int32_t tp_mbqm(int32_t x, int32_t m, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return tp_rdbpot(tp_srdhm((int32_t)((uint32_t)x << left), m), right);
}

static inline int8_t clamp8(int64_t v, int lo, int hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}


static inline int32_t wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* C's round() (half away from zero) then x86's double -> int32 conversion (INT32_MIN when
 * out of range or NaN), without libm. */
static int32_t round_to_i32(double v)
{
    const double a = v < 0 ? -v : v;
    double r = v;
    if (a < 4503599627370496.0) { /* below 2^52: may have a fraction */
        double t = (double)(int64_t)a;
        if (a - t >= 0.5) t += 1.0;
        r = v < 0 ? -t : t;
    }
    if (!(r >= -2147483648.0 && r < 2147483648.0)) return INT32_MIN;
    return (int32_t)r;
}

/* roundf() (half away from zero) in float, then the int32 conversion as above. */
static int32_t roundf_to_i32(float v)
{
    const float a = v < 0 ? -v : v;
    float r = v;
    if (a < 8388608.0f) { /* below 2^23: may have a fraction */
        float t = (float)(int32_t)a;
        if (a - t >= 0.5f) t += 1.0f;
        r = v < 0 ? -t : t;
    }
    if (!(r >= -2147483648.0f && r < 2147483648.0f)) return INT32_MIN;
    return (int32_t)r;
}

/* --- convolutions ------------------------------------------------------------------------ */
/* write-ahead: 1 output pixel (its channels one by one, each re-reading the whole window).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
void tp_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                int8_t *y, int oh, int ow, int ors)
{
    if (tp_fast_conv_s8(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors)) return;
    TP_CONV_REF(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, TP_RD);
}

/* write-ahead: 1 output pixel (its channels one by one).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
void tp_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                  int8_t *y, int oh, int ow, int ors)
{
    if (tp_fast_dwconv_s8(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors)) return;
    TP_DWCONV_REF(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, TP_RD);
}

/* --- pooling (padded cells never take part) --------------------------------------------- */
/* write-ahead: 1 output pixel.
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
void tp_avgpool_s8(const tp_pool_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                   int8_t *y, int oh, int ow, int ors)
{
    const int c = p->c;
    for (int oy = 0; oy < oh; oy++) {
        const int iy0 = oy * p->sh - pt;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + p->kh > ih ? ih - iy0 : p->kh;
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * p->sw - pl;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + p->kw > iw ? iw - ix0 : p->kw;
            const int count = (ky1 - ky0) * (kx1 - kx0);
            int8_t *out = y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox * c;
            for (int ch = 0; ch < c; ch++) {
                int32_t sum = 0;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++)
                        sum += TP_RD(x[(ptrdiff_t)(iy0 + ky) * irs + (ptrdiff_t)(ix0 + kx) * c + ch]);
                int32_t v = 0;
                if (count > 0) {
                    const int32_t half = count / 2;
                    v = sum > 0 ? (sum + half) / count : -((half - sum) / count);
                }
                TP_WR(out[ch], clamp8(v, p->act_min, p->act_max));
            }
        }
    }
}

/* write-ahead: 1 output pixel.
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
void tp_maxpool_s8(const tp_pool_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                   int8_t *y, int oh, int ow, int ors)
{
    const int c = p->c;
    for (int oy = 0; oy < oh; oy++) {
        const int iy0 = oy * p->sh - pt;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + p->kh > ih ? ih - iy0 : p->kh;
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * p->sw - pl;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + p->kw > iw ? iw - ix0 : p->kw;
            int8_t *out = y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox * c;
            for (int ch = 0; ch < c; ch++) {
                int m = -128;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const int v = TP_RD(x[(ptrdiff_t)(iy0 + ky) * irs + (ptrdiff_t)(ix0 + kx) * c + ch]);
                        if (v > m) m = v;
                    }
                TP_WR(out[ch], clamp8(m, p->act_min, p->act_max));
            }
        }
    }
}

void tp_resize_nn(const int16_t *rows, const int16_t *cols, int ry0, int rx0, int c, int esize,
                  const void *x, int irs, void *y, int oh, int ow, int ors)
{
    const size_t px = (size_t)c * esize;
    for (int oy = 0; oy < oh; oy++) {
        const char *src = (const char *)x + (ptrdiff_t)(rows[oy] - ry0) * irs * esize;
        char *dst = (char *)y + (ptrdiff_t)oy * ors * esize;
        for (int ox = 0; ox < ow; ox++)
            memcpy(dst + ox * px, src + (ptrdiff_t)(cols[ox] - rx0) * px, px);
    }
}

void tp_resize_bl_s8(const int16_t *ylo, const int16_t *yhi, const int16_t *yw, const int16_t *xlo,
                     const int16_t *xhi, const int16_t *xw, int ry0, int rx0, int c, const int8_t *x, int irs,
                     int8_t *y, int oh, int ow, int ors)
{
    for (int oy = 0; oy < oh; oy++) {
        const int8_t *r0 = x + (ptrdiff_t)(ylo[oy] - ry0) * irs, *r1 = x + (ptrdiff_t)(yhi[oy] - ry0) * irs;
        const int64_t wy1 = yw[oy], wy0 = 1024 - wy1;
        int8_t *out = y + (ptrdiff_t)oy * ors;
        for (int ox = 0; ox < ow; ox++) {
            const ptrdiff_t c0 = (ptrdiff_t)(xlo[ox] - rx0) * c, c1 = (ptrdiff_t)(xhi[ox] - rx0) * c;
            const int64_t wx1 = xw[ox], wx0 = 1024 - wx1;
            for (int ch = 0; ch < c; ch++) {
                const int64_t v = r0[c0 + ch] * wy0 * wx0 + r1[c0 + ch] * wy1 * wx0 + r0[c1 + ch] * wy0 * wx1
                                  + r1[c1 + ch] * wy1 * wx1;
                out[(ptrdiff_t)ox * c + ch] = (int8_t)((v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
            }
        }
    }
}

void tp_tconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0, int oyp,
                 int oxp, int8_t *y, int oh, int ow, int ors)
{
    if (tp_fast_tconv_s8(p, x, ih, iw, irs, iy0, ix0, oyp, oxp, y, oh, ow, ors)) return;
    const int cin = p->cin, cout = p->cout, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, zp = p->in_zp;
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            int8_t *out = y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox * cout;
            for (int oc = 0; oc < cout; oc++) {
                int32_t acc = p->bias ? p->bias[oc] : 0;
                for (int ky = 0; ky < kh; ky++) {
                    const int ty = oyp + oy - ky;
                    if (ty < 0 || ty % sh) continue;
                    const int iy = ty / sh - iy0;
                    if (iy < 0 || iy >= ih) continue;
                    for (int kx = 0; kx < kw; kx++) {
                        const int tx = oxp + ox - kx;
                        if (tx < 0 || tx % sw) continue;
                        const int ix = tx / sw - ix0;
                        if (ix < 0 || ix >= iw) continue;
                        const int8_t *px = x + (ptrdiff_t)iy * irs + (ptrdiff_t)ix * cin;
                        const int8_t *wk = p->w + (((ptrdiff_t)oc * kh + ky) * kw + kx) * cin;
                        for (int c = 0; c < cin; c++) acc = wrap_add(acc, wk[c] * (px[c] - zp));
                    }
                }
                out[oc] = tp_requant(acc, p->mult[oc], p->shift[oc], p->out_zp, p->act_min, p->act_max);
            }
        }
    }
}

/* --- element-wise ------------------------------------------------------------------------ */
#define TP_FOR3(d) \
    for (int32_t i0 = 0; i0 < (d)[0]; i0++) \
        for (int32_t i1 = 0; i1 < (d)[1]; i1++) \
            for (int32_t i2 = 0; i2 < (d)[2]; i2++)
#define TP_AT(p, s) ((p) + (ptrdiff_t)i0 * (s)[0] + (ptrdiff_t)i1 * (s)[1] + (ptrdiff_t)i2 * (s)[2])

static inline int8_t add1(const tp_add_p *p, int a, int b)
{
    const int32_t x1 = tp_rdbpot(tp_srdhm((a - p->zp1) * (1 << 20), p->m1), -p->sh1);
    const int32_t x2 = tp_rdbpot(tp_srdhm((b - p->zp2) * (1 << 20), p->m2), -p->sh2);
    const int32_t v = tp_rdbpot(tp_srdhm(x1 + x2, p->mo), -p->sho);
    return clamp8((int64_t)v + p->out_zp, p->act_min, p->act_max);
}

void tp_add_s8(const tp_add_p *p, const int32_t *d, const int8_t *a, const int32_t *sa,
               const int8_t *b, const int32_t *sb, int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *pa = TP_AT(a, sa), *pb = TP_AT(b, sb);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) TP_WR(py[i * sy[3]], add1(p, TP_RD(pa[i * sa[3]]), TP_RD(pb[i * sb[3]])));
    }
}

void tp_mul_s8(const tp_mul_p *p, const int32_t *d, const int8_t *a, const int32_t *sa,
               const int8_t *b, const int32_t *sb, int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *pa = TP_AT(a, sa), *pb = TP_AT(b, sb);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) {
            const int32_t prod = (TP_RD(pa[i * sa[3]]) - p->zp1) * (TP_RD(pb[i * sb[3]]) - p->zp2);
            TP_WR(py[i * sy[3]], tp_requant(prod, p->m, p->shift, p->out_zp, p->act_min, p->act_max));
        }
    }
}

void tp_maxmin_s8(int is_max, const int32_t *d, const int8_t *a, const int32_t *sa, const int8_t *b,
                  const int32_t *sb, int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *pa = TP_AT(a, sa), *pb = TP_AT(b, sb);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) {
            const int8_t u = pa[i * sa[3]], v = pb[i * sb[3]];
            py[i * sy[3]] = (u > v) == (is_max != 0) ? u : v;
        }
    }
}

void tp_sqdiff_s8(const tp_sqdiff_p *p, const int32_t *d, const int8_t *a, const int32_t *sa, const int8_t *b,
                  const int32_t *sb, int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *pa = TP_AT(a, sa), *pb = TP_AT(b, sb);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) {
            const int32_t x1 = tp_rdbpot(tp_srdhm((pa[i * sa[3]] - p->zp1) * (1 << 7), p->m1), -p->sh1);
            const int32_t x2 = tp_rdbpot(tp_srdhm((pb[i * sb[3]] - p->zp2) * (1 << 7), p->m2), -p->sh2);
            const int32_t diff = x1 - x2;
            py[i * sy[3]] = clamp8((int64_t)tp_mbqm(diff * diff, p->mo, p->sho) + p->out_zp, -128, 127);
        }
    }
}

void tp_prelu_s8(const tp_prelu_p *p, const int32_t *d, const int8_t *a, const int32_t *sa, const int8_t *b,
                 const int32_t *sb, int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *pa = TP_AT(a, sa), *pb = TP_AT(b, sb);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) {
            const int32_t v = pa[i * sa[3]] - p->zp;
            const int32_t r = v >= 0 ? tp_mbqm(v, p->m_pos, p->sh_pos)
                                     : tp_mbqm(v * (pb[i * sb[3]] - p->zp_alpha), p->m_neg, p->sh_neg);
            py[i * sy[3]] = clamp8((int64_t)r + p->out_zp, -128, 127);
        }
    }
}

void tp_lut_s8(const int8_t *lut, const int32_t *d, const int8_t *x, const int32_t *sx,
               int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *px = TP_AT(x, sx);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) TP_WR(py[i * sy[3]], lut[TP_RD(px[i * sx[3]]) + 128]);
    }
}

void tp_lut_f32(const float *lut, const int32_t *d, const int8_t *x, const int32_t *sx,
                float *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const int8_t *px = TP_AT(x, sx);
        float *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) py[i * sy[3]] = lut[px[i * sx[3]] + 128];
    }
}

void tp_quantize_f32(float scale, int zp, const int32_t *d, const float *x, const int32_t *sx,
                     int8_t *y, const int32_t *sy)
{
    TP_FOR3(d) {
        const float *px = TP_AT(x, sx);
        int8_t *py = TP_AT(y, sy);
        for (int32_t i = 0; i < d[3]; i++) {
            const int32_t q = roundf_to_i32(px[i * sx[3]] / scale);
            py[i * sy[3]] = clamp8(wrap_add(q, zp), -128, 127);
        }
    }
}

void tp_copy(int esize, const int32_t *d, const void *x, const int32_t *sx, void *y, const int32_t *sy)
{
    const char *cx = (const char *)x;
    char *cy = (char *)y;
    TP_FOR3(d) {
        const char *px = cx + ((ptrdiff_t)i0 * sx[0] + (ptrdiff_t)i1 * sx[1] + (ptrdiff_t)i2 * sx[2]) * esize;
        char *py = cy + ((ptrdiff_t)i0 * sy[0] + (ptrdiff_t)i1 * sy[1] + (ptrdiff_t)i2 * sy[2]) * esize;
        if (sx[3] == 1 && sy[3] == 1) {
            memmove(py, px, (size_t)d[3] * esize);
        } else {
            for (int32_t i = 0; i < d[3]; i++) /* memmove: in place, an element may be copied onto itself */
                memmove(py + (ptrdiff_t)i * sy[3] * esize, px + (ptrdiff_t)i * sx[3] * esize, (size_t)esize);
        }
    }
}

/* write-ahead: 1 output pixel (element by element, each read before it is written).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
void tp_pad(int esize, const void *value, const int32_t *din, const int32_t *before, const void *x,
            const int32_t *sx, const int32_t *dout, void *y, const int32_t *sy)
{
    const char *cx = (const char *)x;
    char *cy = (char *)y;
    for (int32_t o0 = 0; o0 < dout[0]; o0++)
        for (int32_t o1 = 0; o1 < dout[1]; o1++)
            for (int32_t o2 = 0; o2 < dout[2]; o2++) {
                const int32_t i0 = o0 - before[0], i1 = o1 - before[1], i2 = o2 - before[2];
                const int inside = i0 >= 0 && i0 < din[0] && i1 >= 0 && i1 < din[1] && i2 >= 0 && i2 < din[2];
                char *py = cy + ((ptrdiff_t)o0 * sy[0] + (ptrdiff_t)o1 * sy[1] + (ptrdiff_t)o2 * sy[2]) * esize;
                for (int32_t o3 = 0; o3 < dout[3]; o3++) {
                    const int32_t i3 = o3 - before[3];
                    const void *src = value;
                    if (inside && i3 >= 0 && i3 < din[3])
                        src = cx + ((ptrdiff_t)i0 * sx[0] + (ptrdiff_t)i1 * sx[1] + (ptrdiff_t)i2 * sx[2]
                                    + (ptrdiff_t)i3 * sx[3]) * esize;
#if defined(TP_SHADOW)
                    if (src != value) tp_shadow_read(src, (size_t)esize);
                    tp_shadow_write(py + (ptrdiff_t)o3 * sy[3] * esize, (size_t)esize);
#endif
                    memcpy(py + (ptrdiff_t)o3 * sy[3] * esize, src, (size_t)esize);
                }
            }
}

/* --- whole-tensor kernels ---------------------------------------------------------------- */
void tp_fc_s8(const tp_fc_p *p, const int8_t *x, int rows, int8_t *y)
{
    for (int r = 0; r < rows; r++) {
        const int8_t *xr = x + (ptrdiff_t)r * p->depth;
        for (int32_t u = 0; u < p->units; u++) {
            const int8_t *w = p->w + (ptrdiff_t)u * p->depth;
            int32_t acc = 0;
            for (int32_t k = 0; k < p->depth; k++) acc += (w[k] - p->w_zp) * (xr[k] - p->in_zp);
            if (p->bias) acc = wrap_add(acc, p->bias[u]);
            const int32_t v = round_to_i32((double)acc * p->scale[p->per_channel ? u : 0]);
            y[(ptrdiff_t)r * p->units + u] = clamp8(wrap_add(v, p->out_zp), p->act_min, p->act_max);
        }
    }
}

void tp_mean_s8(const tp_mean_p *p, const int32_t *d, const int32_t *reduce, const int8_t *x, int8_t *y)
{
    const ptrdiff_t s3 = 1, s2 = d[3], s1 = (ptrdiff_t)d[2] * d[3], s0 = (ptrdiff_t)d[1] * s1;
    int32_t od[4], rd[4];
    for (int k = 0; k < 4; k++) {
        od[k] = reduce[k] ? 1 : d[k];
        rd[k] = reduce[k] ? d[k] : 1;
    }
    for (int32_t o0 = 0; o0 < od[0]; o0++)
        for (int32_t o1 = 0; o1 < od[1]; o1++)
            for (int32_t o2 = 0; o2 < od[2]; o2++)
                for (int32_t o3 = 0; o3 < od[3]; o3++) {
                    uint32_t sum = 0;
                    for (int32_t r0 = 0; r0 < rd[0]; r0++)
                        for (int32_t r1 = 0; r1 < rd[1]; r1++)
                            for (int32_t r2 = 0; r2 < rd[2]; r2++) {
                                const int8_t *px = x + (o0 + r0) * s0 + (o1 + r1) * s1 + (o2 + r2) * s2 + o3 * s3;
                                for (int32_t r3 = 0; r3 < rd[3]; r3++) sum += (uint32_t)(int32_t)px[r3];
                            }
                    const int32_t total = (int32_t)(sum - (uint32_t)p->in_zp * (uint32_t)p->count);
                    *y++ = clamp8((int64_t)tp_mbqm(total, p->m, p->shift) + p->out_zp, -128, 127);
                }
}

/* gemmlowp fixed point used by the softmax reciprocal */
static int32_t sat_mul_pot(int32_t x, int exponent) /* exponent > 0 */
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

static int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    int64_t s = (int64_t)a + INT32_MAX;
    s += s >= 0 ? 1 : -1;
    const int32_t half_denominator = (int32_t)(s / 2);
    const int32_t one_q2 = 1 << 29;
    int32_t x = wrap_add(1515870810, tp_srdhm(half_denominator, -1010580540));
    for (int i = 0; i < 3; i++) {
        const int32_t one_minus = wrap_sub(one_q2, tp_srdhm(half_denominator, x));
        x = wrap_add(x, sat_mul_pot(tp_srdhm(x, one_minus), 2));
    }
    return sat_mul_pot(x, 1);
}

static int clz32(uint32_t x)
{
    int n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
}

void tp_softmax_s8(const tp_softmax_p *p, const int8_t *x, int rows, int depth, int8_t *y)
{
    for (int r = 0; r < rows; r++) {
        const int8_t *xr = x + (ptrdiff_t)r * depth;
        int8_t *yr = y + (ptrdiff_t)r * depth;
        int mx = -128;
        for (int c = 0; c < depth; c++)
            if (xr[c] > mx) mx = xr[c];
        uint32_t sum = 0;
        for (int c = 0; c < depth; c++) {
            const int diff = xr[c] - mx;
            if (diff >= p->diff_min) sum += (uint32_t)tp_rdbpot(p->exps[-diff], 12);
        }
        const int32_t total = (int32_t)sum;
        const int headroom = clz32((uint32_t)total);
        const int bits_over_unit = 12 - headroom;
        const uint32_t shifted = headroom < 32 ? (uint32_t)total << headroom : 0;
        const int32_t recip = one_over_one_plus_x_for_x_in_0_1((int32_t)(shifted - 0x80000000u));
        for (int c = 0; c < depth; c++) {
            const int diff = xr[c] - mx;
            if (diff >= p->diff_min) {
                const int32_t prob = (int32_t)rdbpot64(tp_srdhm(recip, p->exps[-diff]), bits_over_unit + 31 - 8);
                yr[c] = clamp8((int64_t)prob - 128, -128, 127);
            } else {
                yr[c] = -128;
            }
        }
    }
}

/* --- global average accumulated tile by tile -------------------------------------------- */
void tp_sum_channels(int32_t *sums, const int8_t *x, int h, int w, int rs, int c)
{
    for (int r = 0; r < h; r++)
        for (int q = 0; q < w; q++) {
            const int8_t *px = x + (ptrdiff_t)r * rs + (ptrdiff_t)q * c;
            for (int ch = 0; ch < c; ch++) sums[ch] = (int32_t)((uint32_t)sums[ch] + (uint32_t)(int32_t)px[ch]);
        }
}

void tp_mean_finish_s8(const tp_mean_p *p, const int32_t *sums, int c, int8_t *y)
{
    for (int ch = 0; ch < c; ch++) {
        const int32_t total = (int32_t)((uint32_t)sums[ch] - (uint32_t)p->in_zp * (uint32_t)p->count);
        y[ch] = clamp8((int64_t)tp_mbqm(total, p->m, p->shift) + p->out_zp, -128, 127);
    }
}

void tp_avgpool_finish_s8(const tp_pool_p *p, const int32_t *sums, int32_t count, int8_t *y)
{
    const int32_t half = count / 2;
    for (int ch = 0; ch < p->c; ch++) {
        const int64_t s = sums[ch];
        y[ch] = clamp8(s > 0 ? (s + half) / count : -((half - s) / count), p->act_min, p->act_max);
    }
}

/* --- tile bookkeeping -------------------------------------------------------------------- */
void tp_copy_rows(void *dst, int dst_rs, const void *src, int src_rs, int rows, int row_bytes)
{
    for (int r = 0; r < rows; r++)
        memmove((char *)dst + (ptrdiff_t)r * dst_rs, (const char *)src + (ptrdiff_t)r * src_rs, (size_t)row_bytes);
}

void tp_shift_rows(void *buf, int rs, int rows, int row_bytes, ptrdiff_t delta)
{
    char *b = (char *)buf;
    if (delta >= 0) {
        for (int r = 0; r < rows; r++) memmove(b + (ptrdiff_t)r * rs, b + (ptrdiff_t)r * rs + delta, (size_t)row_bytes);
    } else {
        for (int r = rows - 1; r >= 0; r--) memmove(b + (ptrdiff_t)r * rs, b + (ptrdiff_t)r * rs + delta, (size_t)row_bytes);
    }
}
