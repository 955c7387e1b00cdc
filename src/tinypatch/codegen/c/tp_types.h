/* tinypatch kernel parameter types, shared by the reference kernels (tp_kernels.c) and the
 * optimised ones (tp_fast.c, tp_fast_mve.c). Written for tinypatch; no code from other projects. */
#ifndef TP_TYPES_H
#define TP_TYPES_H

#include <stddef.h>
#include <stdint.h>

#define TP_ALIGN(n) __attribute__((aligned(n)))

/* Per-channel requantization for the optimised kernels, valid when the generator proved
 * |acc| << (left + 1) < 2^31 for every possible accumulator: then TFLite's
 * MultiplyByQuantizedMultiplier(acc, mult, shift) is exactly
 *   v = (acc << lsh) * mult rounded to the high 32 bits (SMMULR), lsh = left + 1;
 *   v = (v + rnd + (v < 0 ? nmask : 0)) >> rsh        (round half away from zero).
 * bias has the input zero point folded in: bias - in_zp * sum of the channel's weights. */
typedef struct {
    int32_t bias, mult, rnd, nmask;
    uint8_t lsh, rsh;
} tp_rq;

typedef struct {
    const int8_t *w;       /* CONV_2D: [cout][kh][kw][cin]; DEPTHWISE: [kh][kw][cout] */
    const int32_t *bias;   /* [cout] or NULL */
    const int32_t *mult;   /* [cout] quantized multipliers */
    const int8_t *shift;   /* [cout] shifts (> 0: left) */
    const tp_rq *rq;       /* [cout] fast requantization, or NULL (reference path only) */
    const int32_t *mve;    /* depthwise on Helium: per 16 channels, 5 x 16 lane-ordered parameters, or NULL */
    int16_t cin, cout, kh, kw, sh, sw, dh, dw, dm;
    int16_t in_zp, out_zp, act_min, act_max;
    int16_t inplace;       /* 1: y overlaps x (run in place): kernels must write in raster order */
} tp_conv_p;

typedef struct {
    int16_t c, kh, kw, sh, sw, act_min, act_max;
} tp_pool_p;

typedef struct {
    const int8_t *w;       /* [units][depth] */
    const int32_t *bias;   /* [units] or NULL */
    const double *scale;   /* [units] or [1]: double(s_in) * double(s_w) / double(s_out) */
    int32_t units, depth;
    int16_t per_channel, in_zp, w_zp, out_zp, act_min, act_max;
} tp_fc_p;

typedef struct {
    int32_t m1, m2, mo;
    int8_t sh1, sh2, sho;
    int16_t zp1, zp2, out_zp, act_min, act_max;
} tp_add_p;

typedef struct {
    int32_t m;
    int8_t shift;
    int16_t zp1, zp2, out_zp, act_min, act_max;
} tp_mul_p;

typedef struct {
    int32_t m;
    int8_t shift;
    int16_t in_zp, out_zp;
    int32_t count;
} tp_mean_p;

typedef struct {           /* SQUARED_DIFFERENCE: inputs << 7 rescaled (m1, m2), squared difference (mo) */
    int32_t m1, m2, mo;
    int8_t sh1, sh2, sho;
    int16_t zp1, zp2, out_zp;
} tp_sqdiff_p;

typedef struct {           /* PRELU: x - zp >= 0: (m_pos, sh_pos); else (x - zp) * (alpha - zp_a): (m_neg, sh_neg) */
    int32_t m_pos, m_neg;
    int8_t sh_pos, sh_neg;
    int16_t zp, zp_alpha, out_zp;
} tp_prelu_p;

typedef struct {
    const int32_t *exps;   /* [256]: exp of a difference -d (d = 0..255) in Q0.31 */
    int32_t diff_min;
} tp_softmax_p;

#endif
