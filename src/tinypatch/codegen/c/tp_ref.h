/* The reference convolution loops, written once for the int8 kernels (tp_kernels.c) and for the
 * kernels that read a lowered stage input through a table (tp_lowbit.c): LOAD(v) is how an input
 * value is read (TP_RD for int8, a table lookup for the low-bit path). Internal to the runtime;
 * include it after tp_kernels.h (tp_conv_p, tp_mbqm), which it does not include itself so that the
 * kernel files keep calling each other in one direction. */
#ifndef TP_REF_H
#define TP_REF_H

#include <stddef.h>
#include <stdint.h>

#include "tp_shadow.h"

static inline int8_t tp_requant(int32_t acc, int32_t m, int shift, int zp, int lo, int hi)
{
    const int64_t v = (int64_t)tp_mbqm(acc, m, shift) + zp;
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* write-ahead: 1 output pixel (its channels one by one, each re-reading the whole window) */
#define TP_CONV_REF(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, LOAD)                                 \
    do {                                                                                           \
        const int cin_ = (p)->cin, cout_ = (p)->cout, kh_ = (p)->kh, kw_ = (p)->kw, zp_ = (p)->in_zp; \
        for (int oy = 0; oy < (oh); oy++) {                                                        \
            const int iy0 = oy * (p)->sh - (pt);                                                   \
            for (int ox = 0; ox < (ow); ox++) {                                                    \
                const int ix0 = ox * (p)->sw - (pl);                                               \
                int8_t *out = (y) + (ptrdiff_t)oy * (ors) + (ptrdiff_t)ox * cout_;                 \
                for (int oc = 0; oc < cout_; oc++) {                                               \
                    const int8_t *w = (p)->w + (ptrdiff_t)oc * kh_ * kw_ * cin_;                   \
                    int32_t acc = (p)->bias ? (p)->bias[oc] : 0;                                   \
                    for (int ky = 0; ky < kh_; ky++) {                                             \
                        const int iy = iy0 + ky * (p)->dh;                                         \
                        if (iy < 0 || iy >= (ih)) continue;                                        \
                        for (int kx = 0; kx < kw_; kx++) {                                         \
                            const int ix = ix0 + kx * (p)->dw;                                     \
                            if (ix < 0 || ix >= (iw)) continue;                                    \
                            const int8_t *px = (x) + (ptrdiff_t)iy * (irs) + (ptrdiff_t)ix * cin_; \
                            const int8_t *wk = w + (ky * kw_ + kx) * cin_;                         \
                            for (int c = 0; c < cin_; c++) acc += wk[c] * (LOAD(px[c]) - zp_);     \
                        }                                                                          \
                    }                                                                              \
                    TP_WR(out[oc], tp_requant(acc, (p)->mult[oc], (p)->shift[oc], (p)->out_zp,     \
                                              (p)->act_min, (p)->act_max));                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* write-ahead: 1 output pixel (its channels one by one) */
#define TP_DWCONV_REF(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, LOAD)                               \
    do {                                                                                           \
        const int cin_ = (p)->cin, cout_ = (p)->cout, dm_ = (p)->dm, kh_ = (p)->kh, kw_ = (p)->kw;  \
        const int zp_ = (p)->in_zp;                                                                \
        for (int oy = 0; oy < (oh); oy++) {                                                        \
            const int iy0 = oy * (p)->sh - (pt);                                                   \
            for (int ox = 0; ox < (ow); ox++) {                                                    \
                const int ix0 = ox * (p)->sw - (pl);                                               \
                int8_t *out = (y) + (ptrdiff_t)oy * (ors) + (ptrdiff_t)ox * cout_;                 \
                for (int oc = 0; oc < cout_; oc++) {                                               \
                    const int ic = oc / dm_;                                                       \
                    int32_t acc = (p)->bias ? (p)->bias[oc] : 0;                                   \
                    for (int ky = 0; ky < kh_; ky++) {                                             \
                        const int iy = iy0 + ky * (p)->dh;                                         \
                        if (iy < 0 || iy >= (ih)) continue;                                        \
                        for (int kx = 0; kx < kw_; kx++) {                                         \
                            const int ix = ix0 + kx * (p)->dw;                                     \
                            if (ix < 0 || ix >= (iw)) continue;                                    \
                            acc += (p)->w[(ky * kw_ + kx) * cout_ + oc]                            \
                                   * (LOAD((x)[(ptrdiff_t)iy * (irs) + (ptrdiff_t)ix * cin_ + ic]) - zp_); \
                        }                                                                          \
                    }                                                                              \
                    TP_WR(out[oc], tp_requant(acc, (p)->mult[oc], (p)->shift[oc], (p)->out_zp,     \
                                              (p)->act_min, (p)->act_max));                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#endif
