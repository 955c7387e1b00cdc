/* Helium (MVE) kernels for Cortex-M55 (tp_fast_mve.c), called by tp_fast.c; each returns 1 when
 * it handled the call, 0 to fall back. */
#ifndef TP_FAST_MVE_H
#define TP_FAST_MVE_H

#include "tp_types.h"

#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
int tp_mve_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                   int8_t *y, int oh, int ow, int ors);
int tp_mve_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                     int8_t *y, int oh, int ow, int ors);
int tp_mve_tconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0, int oyp,
                    int oxp, int8_t *y, int oh, int ow, int ors);
#endif

#endif
