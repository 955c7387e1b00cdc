/* tinypatch kernels: int8 operators with TFLite reference arithmetic (bit-exact).
 *
 * Written for tinypatch; no code from other projects. C99, no malloc, no recursion.
 * Layout is NHWC. Spatial kernels read an input window [ih x iw] with row stride irs
 * (elements) and explicit zero padding (pt, pl) before it, and write an output window
 * [oh x ow] with row stride ors: the same call computes a whole feature map or one tile.
 * Element-wise kernels walk a 4-D iteration space d[4] with per-operand strides
 * (elements; 0 broadcasts).
 */
#ifndef TP_KERNELS_H
#define TP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "tp_shadow.h"
#include "tp_types.h"


/* --- fixed point (gemmlowp / TFLite reference) --------------------------------------- */
int32_t tp_srdhm(int32_t a, int32_t b);
int32_t tp_rdbpot(int32_t x, int exponent);
int32_t tp_mbqm(int32_t x, int32_t m, int shift);

/* --- spatial kernels ------------------------------------------------------------------ */
void tp_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                int8_t *y, int oh, int ow, int ors);
void tp_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                  int8_t *y, int oh, int ow, int ors);
void tp_avgpool_s8(const tp_pool_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                   int8_t *y, int oh, int ow, int ors);
void tp_maxpool_s8(const tp_pool_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                   int8_t *y, int oh, int ow, int ors);
void tp_resize_nn(const int16_t *rows, const int16_t *cols, int ry0, int rx0, int c, int esize,
                  const void *x, int irs, void *y, int oh, int ow, int ors);
/* RESIZE_BILINEAR (int8): per output row/col its lower and upper source index and the weight
 * of the upper one in 1/1024 (tables from the full resize, offset to the window), ry0/rx0: the
 * tensor coordinates of x's first row/col. */
void tp_resize_bl_s8(const int16_t *ylo, const int16_t *yhi, const int16_t *yw, const int16_t *xlo,
                     const int16_t *xhi, const int16_t *xw, int ry0, int rx0, int c, const int8_t *x, int irs,
                     int8_t *y, int oh, int ow, int ors);
/* TRANSPOSE_CONV (int8, p: filter [cout][kh][kw][cin]): output pixel (oy, ox) of the window,
 * shifted by (oyp, oxp) = window origin + padding, gathers input pixel ((oyp + oy - ky) / sh,
 * (oxp + ox - kx) / sw) where the division is exact; x holds input rows/cols from (iy0, ix0) on. */
void tp_tconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0, int oyp,
                 int oxp, int8_t *y, int oh, int ow, int ors);

/* --- element-wise kernels over d[4] with strides (elements) ---------------------------- */
void tp_add_s8(const tp_add_p *p, const int32_t *d, const int8_t *a, const int32_t *sa,
               const int8_t *b, const int32_t *sb, int8_t *y, const int32_t *sy);
void tp_mul_s8(const tp_mul_p *p, const int32_t *d, const int8_t *a, const int32_t *sa,
               const int8_t *b, const int32_t *sb, int8_t *y, const int32_t *sy);
void tp_maxmin_s8(int is_max, const int32_t *d, const int8_t *a, const int32_t *sa, const int8_t *b,
                  const int32_t *sb, int8_t *y, const int32_t *sy);
void tp_sqdiff_s8(const tp_sqdiff_p *p, const int32_t *d, const int8_t *a, const int32_t *sa, const int8_t *b,
                  const int32_t *sb, int8_t *y, const int32_t *sy);
void tp_prelu_s8(const tp_prelu_p *p, const int32_t *d, const int8_t *a, const int32_t *sa, const int8_t *b,
                 const int32_t *sb, int8_t *y, const int32_t *sy);
void tp_lut_s8(const int8_t *lut, const int32_t *d, const int8_t *x, const int32_t *sx,
               int8_t *y, const int32_t *sy);
void tp_lut_f32(const float *lut, const int32_t *d, const int8_t *x, const int32_t *sx,
                float *y, const int32_t *sy);
void tp_quantize_f32(float scale, int zp, const int32_t *d, const float *x, const int32_t *sx,
                     int8_t *y, const int32_t *sy);
void tp_copy(int esize, const int32_t *d, const void *x, const int32_t *sx, void *y, const int32_t *sy);
void tp_pad(int esize, const void *value, const int32_t *din, const int32_t *before, const void *x,
            const int32_t *sx, const int32_t *dout, void *y, const int32_t *sy);

/* --- whole-tensor kernels --------------------------------------------------------------- */
void tp_fc_s8(const tp_fc_p *p, const int8_t *x, int rows, int8_t *y);
void tp_mean_s8(const tp_mean_p *p, const int32_t *d, const int32_t *reduce, const int8_t *x, int8_t *y);
void tp_softmax_s8(const tp_softmax_p *p, const int8_t *x, int rows, int depth, int8_t *y);

/* --- a stage ending in a global average: per-channel int32 sums accumulated tile by tile ------ */
void tp_sum_channels(int32_t *sums, const int8_t *x, int h, int w, int rs, int c);
void tp_mean_finish_s8(const tp_mean_p *p, const int32_t *sums, int c, int8_t *y);
void tp_avgpool_finish_s8(const tp_pool_p *p, const int32_t *sums, int32_t count, int8_t *y);

/* --- tile bookkeeping ------------------------------------------------------------------ */
void tp_copy_rows(void *dst, int dst_rs, const void *src, int src_rs, int rows, int row_bytes);
/* rows r = 0..rows-1 of buf (row stride rs bytes) take row_bytes from buf + r * rs + delta,
 * in place: in an order that never overwrites a byte still to be read. */
void tp_shift_rows(void *buf, int rs, int rows, int row_bytes, ptrdiff_t delta);

#endif
