/* Hooks for optimised kernels: each returns 1 when it handled the call, 0 to fall back to
 * the portable reference code. Targets without optimised code get constant 0. */
#ifndef TP_FAST_H
#define TP_FAST_H

#include "tp_kernels.h"

#if defined(TP_FAST)
int tp_fast_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                    int8_t *y, int oh, int ow, int ors);
int tp_fast_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                      int8_t *y, int oh, int ow, int ors);
int tp_fast_fc_s8(const tp_fc_p *p, const int8_t *x, int rows, int8_t *y);
#else
#define tp_fast_conv_s8(...) 0
#define tp_fast_dwconv_s8(...) 0
#define tp_fast_fc_s8(...) 0
#endif

#endif
