/* Optimised kernels for Arm Cortex-M (DSP extension on M4/M7, Helium on M55). */
#include "tp_fast.h"

int tp_fast_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                    int8_t *y, int oh, int ow, int ors)
{
    (void)p; (void)x; (void)ih; (void)iw; (void)irs; (void)pt; (void)pl; (void)y; (void)oh; (void)ow; (void)ors;
    return 0;
}

int tp_fast_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                      int8_t *y, int oh, int ow, int ors)
{
    (void)p; (void)x; (void)ih; (void)iw; (void)irs; (void)pt; (void)pl; (void)y; (void)oh; (void)ow; (void)ors;
    return 0;
}

int tp_fast_fc_s8(const tp_fc_p *p, const int8_t *x, int rows, int8_t *y)
{
    (void)p; (void)x; (void)rows; (void)y;
    return 0;
}
