/* Per-patch mixed precision (tinypatch precision plans): the run-time outlier test and the
 * low-bit requantization of a patch, and convolutions that read a lowered stage input.
 *
 * A map lowered to b bits keeps its int8 scale and zero point; a value q becomes
 * q' = clamp(zp + (clamp((q - zp + r) >> s, cmin, cmax) << s), -128, 127) (tinypatch.kernels.lowbit),
 * given here as a 256-entry table filled by the generator from the Python formula. A patch is
 * an outlier when max |q - zp| over it exceeds the map's threshold; it then stays int8.
 * Written for tinypatch; no code from other projects. */
#ifndef TP_LOWBIT_H
#define TP_LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#include "tp_types.h"

/* 1 when a value of h rows of n values (row stride rs values) lies below lo or above hi: the outlier
 * test max |q - zp| > threshold with lo = zp - threshold, hi = zp + threshold; lo <= -128 (hi >= 127)
 * leaves that side untested */
int tp_lb_outside(const int8_t *x, int h, int n, int rs, int lo, int hi);
/* q <- lut[q + 128] over the same region, in place */
void tp_lb_apply(const int8_t *lut, int8_t *x, int h, int n, int rs);
/* tp_lb_apply where the generator checked that on every value the region may hold the table equals
 * min(zp + ((max(q - zp, 0) + r) & -2^shift), 127), r = 2^(shift-1), shift >= 1: byte arithmetic
 * on Cortex-M4/M7 and the host, the table on Cortex-M55 */
void tp_lb_grid(const int8_t *lut, int8_t *x, int h, int n, int rs, int zp, int shift);
/* the spatial kernels tp_lb_spatial runs, and the geometry of their window */
enum { TP_LB_CONV, TP_LB_DWCONV, TP_LB_AVGPOOL, TP_LB_MAXPOOL };
typedef struct {
    int16_t c, oc, kh, kw, sh, sw, dh, dw; /* input and output channels, kernel, stride, dilation */
    int16_t zp, shift;                     /* the map's grid as in tp_lb_grid; shift 0: the table only */
} tp_lb_geom;
#define TP_LB_GATHER 384 /* stack bytes of a gathered input window; one output pixel's window must fit */
/* kernel `kind` (p: its parameters) on a window of a lowered map read through lut (or tp_lb_grid's
 * arithmetic, g->shift >= 1): the input rows of each output row, as many columns as fit, gathered
 * through the table, then the kernel on them */
void tp_lb_spatial(int kind, const void *p, const int8_t *lut, const tp_lb_geom *g, const int8_t *x, int ih, int iw,
                   int irs, int pt, int pl, int8_t *y, int oh, int ow, int ors);
/* tp_conv_s8 / tp_dwconv_s8 (reference arithmetic) reading every input value through lut:
 * a non-outlier tile's view of a lowered map that other tiles also read (not changed in place) */
void tp_lb_conv_s8(const tp_conv_p *p, const int8_t *lut, const int8_t *x, int ih, int iw, int irs, int pt,
                   int pl, int8_t *y, int oh, int ow, int ors);
void tp_lb_dwconv_s8(const tp_conv_p *p, const int8_t *lut, const int8_t *x, int ih, int iw, int irs, int pt,
                     int pl, int8_t *y, int oh, int ow, int ors);

#endif
