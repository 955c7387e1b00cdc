/* Hooks for the optimised kernels (tp_fast.c, which calls the Helium ones of tp_fast_mve.c): each
 * returns 1 when it handled the call, 0 to fall back to the reference code. Built with -DTP_FAST; without it the hooks
 * are constant 0 and only the reference kernels exist. */
#ifndef TP_FAST_H
#define TP_FAST_H

#include "tp_types.h"

#if defined(TP_FAST)
int tp_fast_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                    int8_t *y, int oh, int ow, int ors);
int tp_fast_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                      int8_t *y, int oh, int ow, int ors);
int tp_fast_tconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0, int oyp,
                     int oxp, int8_t *y, int oh, int ow, int ors);
#else
#define tp_fast_conv_s8(...) 0
#define tp_fast_dwconv_s8(...) 0
#define tp_fast_tconv_s8(...) 0
#endif

#endif
