/* Helium (MVE) int8 kernels for Cortex-M55, bit-exact with the reference ones (tp_kernels.c).
 *
 * Written for tinypatch (no code taken from CMSIS-NN):
 * - convolution: 16 MACs per VMLADAVA (multiply-accumulate across a vector into a scalar). Four
 *   pixels of a row whose windows lie inside the input share each weight load (one output channel
 *   at a time, requantized as one vector); short windows (<= 80 bytes) are gathered four at a time
 *   into a zero-padded buffer (im2col), padding included; any other pixel is gathered alone and runs
 *   over four output channels. Taps in the zero padding read the input zero point, so the folded
 *   bias stays exact;
 * - depthwise 3 wide, stride 1 along x: 4 channels as int32 lanes, three pixels per block from a
 *   rolling buffer of padded input rows; other shapes: 16 channels per load, widening multiplies
 *   (VMULLB/VMULLT) into four int32 vectors, requantized with per-lane parameters that the generator
 *   lays out in that lane order;
 * - transpose convolution: the taps landing on an output pixel gathered, 4 output channels per pass,
 *   8 input channels per VMLADAVA on int16 lanes (zero point subtracted: which taps land varies);
 * - requantization per vector lane: VQRDMULH (= SRDHM) and a rounding shift (see requant1),
 *   the per-channel parameters gathered from the tp_rq table. */
#include "tp_fast_mve.h"

#if defined(TP_FAST) && defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#include <string.h>

typedef struct {
    int32x4_t mult, lsh, nmask, negrsh; /* lsh: the left shift alone (VQRDMULH doubles) */
} rq4;

/* Requantization parameters of 4 channels; offs: word offsets of their tp_rq entries from rq. */
static inline rq4 rq_gather(const tp_rq *rq, uint32x4_t offs)
{
    const int32_t *base = (const int32_t *)rq;
    rq4 q;
    q.mult = vldrwq_gather_shifted_offset_s32(base + 1, offs);
    q.nmask = vldrwq_gather_shifted_offset_s32(base + 3, offs);
    const int32x4_t shifts = vldrwq_gather_shifted_offset_s32(base + 4, offs); /* lsh | rsh << 8 */
    q.lsh = vsubq_n_s32(vandq_s32(shifts, vdupq_n_s32(0xff)), 1);
    q.negrsh = vnegq_s32(vandq_s32(vshrq_n_s32(shifts, 8), vdupq_n_s32(0xff)));
    return q;
}

/* Per-lane channels (see requant1; lanes with rsh = 0 have nmask = 0 and shift by 0). */
static inline int32x4_t requant4(int32x4_t acc, const rq4 *q, int zp, int32x4_t lo, int32x4_t hi)
{
    int32x4_t v = vqrdmulhq_s32(vshlq_s32(acc, q->lsh), q->mult);
    v = vrshlq_s32(vaddq_s32(v, vandq_s32(vshrq_n_s32(v, 31), q->nmask)), q->negrsh);
    return vminq_s32(vmaxq_s32(vaddq_n_s32(v, zp), lo), hi);
}

/* One channel's requantization on 4 lanes (pixels): VQRDMULH is SRDHM itself ((2ab + 2^31) >> 32),
 * and VRSHL by -rsh adds 2^(rsh-1) before shifting, so adding -1 to negative values first gives
 * rounding half away from zero. */
static inline int32x4_t requant1(int32x4_t acc, const tp_rq *q, int zp, int32x4_t lo, int32x4_t hi)
{
    int32x4_t v = vqrdmulhq_n_s32(vshlq_r_s32(acc, q->lsh - 1), q->mult);
    if (q->rsh) v = vrshlq_n_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -(int32_t)q->rsh);
    return vminq_s32(vmaxq_s32(vaddq_n_s32(v, zp), lo), hi);
}

static inline int32x4_t from_lanes(int32_t a, int32_t b, int32_t c, int32_t d)
{
    int32x4_t v = vdupq_n_s32(a);
    v = vsetq_lane_s32(b, v, 1);
    v = vsetq_lane_s32(c, v, 2);
    return vsetq_lane_s32(d, v, 3);
}

/* The dot-product loops in assembly: GCC 12 schedules the intrinsics with address arithmetic per
 * load and spills; these run 16 MACs per VMLADAVA with post-incremented loads, 4 accumulators (even
 * registers, as VMLADAVA requires). chunks >= 1 full 16-byte chunks. */
#define TP_MLA_BEGIN(s0, s1, s2, s3) \
    register int32_t r4_ __asm__("r4") = s0, r6_ __asm__("r6") = s1, r8_ __asm__("r8") = s2, r10_ __asm__("r10") = s3
#define TP_MLA_END(s0, s1, s2, s3) (s0 = r4_, s1 = r6_, s2 = r8_, s3 = r10_)

/* s_i += sum_k x_i[k] * w[k] over 16 * chunks bytes (four pixels, one channel); advances w. */
static inline void mla_4x1(int32_t *s, const int8_t **w, const int8_t *a0, const int8_t *a1, const int8_t *a2,
                           const int8_t *a3, int chunks)
{
    TP_MLA_BEGIN(s[0], s[1], s[2], s[3]);
    const int8_t *wp = *w;
    __asm__ volatile(
        "1:\n\t"
        "vldrb.8 q0, [%[w]], #16\n\t"
        "vldrb.8 q1, [%[a0]], #16\n\t"
        "vmladava.s8 %[s0], q1, q0\n\t"
        "vldrb.8 q1, [%[a1]], #16\n\t"
        "vmladava.s8 %[s1], q1, q0\n\t"
        "vldrb.8 q1, [%[a2]], #16\n\t"
        "vmladava.s8 %[s2], q1, q0\n\t"
        "vldrb.8 q1, [%[a3]], #16\n\t"
        "vmladava.s8 %[s3], q1, q0\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [s0] "+r"(r4_), [s1] "+r"(r6_), [s2] "+r"(r8_), [s3] "+r"(r10_), [w] "+r"(wp), [a0] "+r"(a0),
          [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [n] "+r"(chunks)
        :
        : "q0", "q1", "memory", "cc");
    *w = wp;
    TP_MLA_END(s[0], s[1], s[2], s[3]);
}

/* s_j += sum_k x[k] * w_j[k] over 16 * chunks bytes (one pixel, four channels); x NULL: x[k] = zp. */
static inline void mla_1x4(int32_t *s, const int8_t *x, int8x16_t zpv, const int8_t *w0, const int8_t *w1,
                           const int8_t *w2, const int8_t *w3, int chunks)
{
    TP_MLA_BEGIN(s[0], s[1], s[2], s[3]);
    if (x) {
        __asm__ volatile(
            "1:\n\t"
            "vldrb.8 q0, [%[x]], #16\n\t"
            "vldrb.8 q1, [%[w0]], #16\n\t"
            "vmladava.s8 %[s0], q0, q1\n\t"
            "vldrb.8 q1, [%[w1]], #16\n\t"
            "vmladava.s8 %[s1], q0, q1\n\t"
            "vldrb.8 q1, [%[w2]], #16\n\t"
            "vmladava.s8 %[s2], q0, q1\n\t"
            "vldrb.8 q1, [%[w3]], #16\n\t"
            "vmladava.s8 %[s3], q0, q1\n\t"
            "subs %[n], %[n], #1\n\t"
            "bne 1b"
            : [s0] "+r"(r4_), [s1] "+r"(r6_), [s2] "+r"(r8_), [s3] "+r"(r10_), [x] "+r"(x), [w0] "+r"(w0),
              [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [n] "+r"(chunks)
            :
            : "q0", "q1", "memory", "cc");
    } else {
        __asm__ volatile(
            "vmov q0, %q[z]\n"
            "1:\n\t"
            "vldrb.8 q1, [%[w0]], #16\n\t"
            "vmladava.s8 %[s0], q0, q1\n\t"
            "vldrb.8 q1, [%[w1]], #16\n\t"
            "vmladava.s8 %[s1], q0, q1\n\t"
            "vldrb.8 q1, [%[w2]], #16\n\t"
            "vmladava.s8 %[s2], q0, q1\n\t"
            "vldrb.8 q1, [%[w3]], #16\n\t"
            "vmladava.s8 %[s3], q0, q1\n\t"
            "subs %[n], %[n], #1\n\t"
            "bne 1b"
            : [s0] "+r"(r4_), [s1] "+r"(r6_), [s2] "+r"(r8_), [s3] "+r"(r10_), [w0] "+r"(w0), [w1] "+r"(w1),
              [w2] "+r"(w2), [w3] "+r"(w3), [n] "+r"(chunks)
            : [z] "w"(zpv)
            : "q0", "q1", "memory", "cc");
    }
    TP_MLA_END(s[0], s[1], s[2], s[3]);
}

/* mla_1x4 over 32 * pairs bytes of x (not NULL), two chunks per iteration. */
static inline void mla_1x4_pairs(int32_t *s, const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                                 const int8_t *w3, int pairs)
{
    TP_MLA_BEGIN(s[0], s[1], s[2], s[3]);
#define TP_MLA_1X4                          \
    "vldrb.8 q0, [%[x]], #16\n\t"          \
    "vldrb.8 q1, [%[w0]], #16\n\t"         \
    "vmladava.s8 %[s0], q0, q1\n\t"        \
    "vldrb.8 q1, [%[w1]], #16\n\t"         \
    "vmladava.s8 %[s1], q0, q1\n\t"        \
    "vldrb.8 q1, [%[w2]], #16\n\t"         \
    "vmladava.s8 %[s2], q0, q1\n\t"        \
    "vldrb.8 q1, [%[w3]], #16\n\t"         \
    "vmladava.s8 %[s3], q0, q1\n\t"
    __asm__ volatile(
        "1:\n\t"
        TP_MLA_1X4
        TP_MLA_1X4
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [s0] "+r"(r4_), [s1] "+r"(r6_), [s2] "+r"(r8_), [s3] "+r"(r10_), [x] "+r"(x), [w0] "+r"(w0),
          [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [n] "+r"(pairs)
        :
        : "q0", "q1", "memory", "cc");
#undef TP_MLA_1X4
    TP_MLA_END(s[0], s[1], s[2], s[3]);
}

static inline uint32x4_t lanes_u32(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    uint32x4_t v = vdupq_n_u32(a);
    v = vsetq_lane_u32(b, v, 1);
    v = vsetq_lane_u32(c, v, 2);
    return vsetq_lane_u32(d, v, 3);
}

/* --- convolution --------------------------------------------------------------------------- */
/* One 16-byte chunk of 4 pixels x 1 channel. */
#define TP_MLA_4X1                         \
    "vldrb.8 q0, [%[w]], #16\n\t"          \
    "vldrb.8 q1, [%[a0]], #16\n\t"         \
    "vmladava.s8 %[s0], q1, q0\n\t"        \
    "vldrb.8 q1, [%[a1]], #16\n\t"         \
    "vmladava.s8 %[s1], q1, q0\n\t"        \
    "vldrb.8 q1, [%[a2]], #16\n\t"         \
    "vmladava.s8 %[s2], q1, q0\n\t"        \
    "vldrb.8 q1, [%[a3]], #16\n\t"         \
    "vmladava.s8 %[s3], q1, q0\n\t"

/* s_i += the taps of 4 windows (a_i: their first rows) over rows rows of 32 * pairs bytes, irs apart;
 * w: the channel's rows x 32 * pairs weights, advanced past them. */
static inline void mla_4x1_rows(int32_t *s, const int8_t **w, const int8_t *a0, const int8_t *a1, const int8_t *a2,
                                const int8_t *a3, int pairs, int rows, int irs)
{
    TP_MLA_BEGIN(s[0], s[1], s[2], s[3]);
    const int8_t *wp = *w;
    const int skip = irs - 32 * pairs;
    int n;
    __asm__ volatile(
        "2:\n\t"
        "mov %[n], %[pairs]\n"
        "1:\n\t"
        TP_MLA_4X1
        TP_MLA_4X1
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "add %[a0], %[a0], %[skip]\n\t"
        "add %[a1], %[a1], %[skip]\n\t"
        "add %[a2], %[a2], %[skip]\n\t"
        "add %[a3], %[a3], %[skip]\n\t"
        "subs %[rows], %[rows], #1\n\t"
        "bne 2b"
        : [s0] "+r"(r4_), [s1] "+r"(r6_), [s2] "+r"(r8_), [s3] "+r"(r10_), [w] "+r"(wp), [a0] "+r"(a0),
          [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [rows] "+r"(rows), [n] "=&r"(n)
        : [pairs] "r"(pairs), [skip] "r"(skip)
        : "q0", "q1", "memory", "cc");
    *w = wp;
    TP_MLA_END(s[0], s[1], s[2], s[3]);
}

/* Four pixels (windows at xp + i * xstep, all taps inside the input), every output channel. */
__attribute__((noinline)) static void conv_4px(const tp_conv_p *p, const int8_t *xp, int xstep, int irs, int8_t *out)
{
    const int cin = p->cin, cout = p->cout, kh = p->kh, n = p->kw * cin;
    const int zp = p->out_zp, full = n & ~15;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const uint32x4_t offs = lanes_u32(0, (uint32_t)cout, 2u * (uint32_t)cout, 3u * (uint32_t)cout);
    const mve_pred16_t tail = vctp8q((uint32_t)(n - full));
    const int8_t *w = p->w;
    for (int oc = 0; oc < cout; oc++) {
        const tp_rq *q = &p->rq[oc];
        int32_t s0 = q->bias, s1 = s0, s2 = s0, s3 = s0;
        if (n % 32 == 0) { /* whole rows of 32-byte chunk pairs: one loop over the window */
            int32_t s[4] = {s0, s1, s2, s3};
            mla_4x1_rows(s, &w, xp, xp + xstep, xp + 2 * xstep, xp + 3 * xstep, n >> 5, kh, irs);
            s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
        } else {
            const int8_t *xr = xp;
            for (int ky = 0; ky < kh; ky++, xr += irs) {
                const int8_t *a0 = xr, *a1 = xr + xstep, *a2 = xr + 2 * xstep, *a3 = xr + 3 * xstep;
                if (full) {
                    int32_t s[4] = {s0, s1, s2, s3};
                    mla_4x1(s, &w, a0, a1, a2, a3, full >> 4);
                    s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
                }
                const int8x16_t wv = vldrbq_z_s8(w, tail);
                s0 = vmladavaq_s8(s0, vldrbq_z_s8(a0 + full, tail), wv);
                s1 = vmladavaq_s8(s1, vldrbq_z_s8(a1 + full, tail), wv);
                s2 = vmladavaq_s8(s2, vldrbq_z_s8(a2 + full, tail), wv);
                s3 = vmladavaq_s8(s3, vldrbq_z_s8(a3 + full, tail), wv);
                w += n - full;
            }
        }
        vstrbq_scatter_offset_s32(out + oc, offs, requant1(from_lanes(s0, s1, s2, s3), q, zp, lo, hi));
    }
}

/* Four pixels whose k input values (a 1x1 window, or a whole window gathered into a buffer) are
 * contiguous at x0 + i * xstep, every output channel. */
__attribute__((noinline)) static void gemm_4px(const tp_conv_p *p, const int8_t *x0, int xstep, int cin, int8_t *out)
{
    const int cout = p->cout, zp = p->out_zp, full = cin & ~15;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const uint32x4_t offs = lanes_u32(0, (uint32_t)cout, 2u * (uint32_t)cout, 3u * (uint32_t)cout);
    const mve_pred16_t tail = vctp8q((uint32_t)(cin - full));
    const int8_t *x1 = x0 + xstep, *x2 = x1 + xstep, *x3 = x2 + xstep, *w = p->w;
    const tp_rq *q = p->rq;
    for (int oc = 0; oc < cout; oc++, q++) {
        int32_t s0 = q->bias, s1 = s0, s2 = s0, s3 = s0;
        const int8_t *a0 = x0 + full, *a1 = x1 + full, *a2 = x2 + full, *a3 = x3 + full;
        if (full) {
            int32_t s[4] = {s0, s1, s2, s3};
            mla_4x1(s, &w, x0, x1, x2, x3, full >> 4);
            s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
        }
        if (full < cin) {
            const int8x16_t wv = vldrbq_z_s8(w, tail);
            s0 = vmladavaq_s8(s0, vldrbq_z_s8(a0, tail), wv);
            s1 = vmladavaq_s8(s1, vldrbq_z_s8(a1, tail), wv);
            s2 = vmladavaq_s8(s2, vldrbq_z_s8(a2, tail), wv);
            s3 = vmladavaq_s8(s3, vldrbq_z_s8(a3, tail), wv);
            w += cin - full;
        }
        vstrbq_scatter_offset_s32(out + oc, offs, requant1(from_lanes(s0, s1, s2, s3), q, zp, lo, hi));
    }
}

/* s[j] += sum_k x[k] * w[j][off + k], k < n; x NULL: every x[k] is the input zero point (padding). */
static inline void run4(const int8_t *x, int8x16_t zpv, const int8_t *const *w, int off, int n, int32_t *s)
{
    const int full = n & ~15;
    if (full) mla_1x4(s, x, zpv, w[0] + off, w[1] + off, w[2] + off, w[3] + off, full >> 4);
    if (full < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - full));
        const int8x16_t xv = x ? vldrbq_z_s8(x + full, pr) : zpv;
        off += full;
        s[0] = vmladavaq_s8(s[0], xv, vldrbq_z_s8(w[0] + off, pr));
        s[1] = vmladavaq_s8(s[1], xv, vldrbq_z_s8(w[1] + off, pr));
        s[2] = vmladavaq_s8(s[2], xv, vldrbq_z_s8(w[2] + off, pr));
        s[3] = vmladavaq_s8(s[3], xv, vldrbq_z_s8(w[3] + off, pr));
    }
}

/* One pixel (window origin iy0, ix0; taps [ky0, ky1) x [kx0, kx1) inside), four channels at a time. */
__attribute__((noinline)) static void conv_1px(const tp_conv_p *p, const int8_t *x, int irs, int iy0, int ix0, int ky0, int ky1, int kx0,
                     int kx1, int8_t *out)
{
    const int cin = p->cin, cout = p->cout, kh = p->kh, kw = p->kw, n = kw * cin, ktotal = kh * n;
    const int zp = p->out_zp;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const int8x16_t zpv = vdupq_n_s8((int8_t)p->in_zp);
    for (int oc = 0; oc < cout; oc += 4) {
        const int last = cout - 1;
        const int c1 = oc + 1 < last ? oc + 1 : last, c2 = oc + 2 < last ? oc + 2 : last, c3 = oc + 3 < last ? oc + 3 : last;
        const int8_t *w[4] = {p->w + (ptrdiff_t)oc * ktotal, p->w + (ptrdiff_t)c1 * ktotal,
                              p->w + (ptrdiff_t)c2 * ktotal, p->w + (ptrdiff_t)c3 * ktotal};
        int32_t s[4] = {p->rq[oc].bias, p->rq[c1].bias, p->rq[c2].bias, p->rq[c3].bias};
        for (int ky = 0; ky < kh; ky++) {
            const int row = ky * n;
            if (ky < ky0 || ky >= ky1) {
                run4(NULL, zpv, w, row, n, s);
                continue;
            }
            const int8_t *xr = x + (ptrdiff_t)(iy0 + ky) * irs + (ptrdiff_t)(ix0 + kx0) * cin;
            if (kx0 > 0) run4(NULL, zpv, w, row, kx0 * cin, s);
            run4(xr, zpv, w, row + kx0 * cin, (kx1 - kx0) * cin, s);
            if (kx1 < kw) run4(NULL, zpv, w, row + kx1 * cin, (kw - kx1) * cin, s);
        }
        int32x4_t v = vdupq_n_s32(s[0]);
        v = vsetq_lane_s32(s[1], v, 1);
        v = vsetq_lane_s32(s[2], v, 2);
        v = vsetq_lane_s32(s[3], v, 3);
        const uint32x4_t offs = lanes_u32(5u * (uint32_t)oc, 5u * (uint32_t)c1, 5u * (uint32_t)c2, 5u * (uint32_t)c3);
        const rq4 r = rq_gather(p->rq, offs);
        vstrbq_p_s32(out + oc, requant4(v, &r, zp, lo, hi), vctp32q((uint32_t)(cout - oc)));
    }
}

/* Windows gathered contiguously ("im2col"): a window's kh x kw x cin bytes at buf, taps in the zero
 * padding written as the input zero point, then zeros up to a multiple of 16 bytes, so every chunk is a
 * full VMLADAVA (the weights' last chunk is loaded predicated: their rows are ktotal apart). */
#define TP_MVE_BUF 320 /* gathered window bytes on the stack: 4 windows of <= 80, or one of <= 320 */

static inline void copy_bytes(int8_t *dst, const int8_t *src, int n)
{
    for (; n > 0; n -= 16, dst += 16, src += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, pr), pr);
    }
}

static inline void fill_bytes(int8_t *dst, int8x16_t v, int n)
{
    for (; n > 0; n -= 16, dst += 16) vstrbq_p_s8(dst, v, vctp8q((uint32_t)n));
}

/* The window of origin (iy0, ix0) into buf (k16 bytes). */
static void im2col(int8_t *buf, const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0,
                   int k16)
{
    const int cin = p->cin, kh = p->kh, kw = p->kw, n = kw * cin;
    const int8x16_t zpv = vdupq_n_s8((int8_t)p->in_zp);
    const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + kw > iw ? iw - ix0 : kw;
    int8_t *d = buf;
    for (int ky = 0; ky < kh; ky++, d += n) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= ih || kx1 <= kx0) {
            fill_bytes(d, zpv, n);
            continue;
        }
        fill_bytes(d, zpv, kx0 * cin);
        copy_bytes(d + kx0 * cin, x + (ptrdiff_t)iy * irs + (ptrdiff_t)(ix0 + kx0) * cin, (kx1 - kx0) * cin);
        fill_bytes(d + kx1 * cin, zpv, (kw - kx1) * cin);
    }
    fill_bytes(d, vdupq_n_s8(0), k16 - kh * n);
}

/* Four gathered windows (buf + i * k16) through every output channel. */
__attribute__((noinline)) static void gemm_buf4(const tp_conv_p *p, const int8_t *buf, int k16, int8_t *out)
{
    const int cout = p->cout, zp = p->out_zp, ktotal = p->kh * p->kw * p->cin, full = (k16 >> 4) - 1;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const uint32x4_t offs = lanes_u32(0, (uint32_t)cout, 2u * (uint32_t)cout, 3u * (uint32_t)cout);
    const mve_pred16_t tail = vctp8q((uint32_t)(ktotal - 16 * full));
    const int8_t *a0 = buf + 16 * full, *a1 = a0 + k16, *a2 = a1 + k16, *a3 = a2 + k16;
    const tp_rq *q = p->rq;
    for (int oc = 0; oc < cout; oc++, q++) {
        int32_t s[4] = {q->bias, q->bias, q->bias, q->bias};
        const int8_t *w = p->w + (ptrdiff_t)oc * ktotal;
        if (full) mla_4x1(s, &w, buf, buf + k16, buf + 2 * k16, buf + 3 * k16, full);
        const int8x16_t wv = vldrbq_z_s8(w, tail);
        s[0] = vmladavaq_s8(s[0], vldrbq_s8(a0), wv);
        s[1] = vmladavaq_s8(s[1], vldrbq_s8(a1), wv);
        s[2] = vmladavaq_s8(s[2], vldrbq_s8(a2), wv);
        s[3] = vmladavaq_s8(s[3], vldrbq_s8(a3), wv);
        vstrbq_scatter_offset_s32(out + oc, offs, requant1(from_lanes(s[0], s[1], s[2], s[3]), q, zp, lo, hi));
    }
}

/* s_j += the gathered window (buf) . w_j over 16 * full bytes, then (tail: its lanes) the chunk xv. */
static inline void dot_1x4(int32_t *s, const int8_t *buf, int8x16_t xv, const int8_t *w0, const int8_t *w1,
                           const int8_t *w2, const int8_t *w3, int full, mve_pred16_t tail)
{
    if (full % 2 == 0 && full) mla_1x4_pairs(s, buf, w0, w1, w2, w3, full >> 1);
    else if (full) mla_1x4(s, buf, xv, w0, w1, w2, w3, full);
    if (!tail) return;
    const int o = 16 * full;
    s[0] = vmladavaq_s8(s[0], xv, vldrbq_z_s8(w0 + o, tail));
    s[1] = vmladavaq_s8(s[1], xv, vldrbq_z_s8(w1 + o, tail));
    s[2] = vmladavaq_s8(s[2], xv, vldrbq_z_s8(w2 + o, tail));
    s[3] = vmladavaq_s8(s[3], xv, vldrbq_z_s8(w3 + o, tail));
}

/* One gathered window (buf) through every output channel, four at a time. */
__attribute__((noinline)) static void gemm_buf1(const tp_conv_p *p, const int8_t *buf, int8_t *out)
{
    const int cout = p->cout, zp = p->out_zp, ktotal = p->kh * p->kw * p->cin, full = ktotal >> 4;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const mve_pred16_t tail = ktotal > 16 * full ? vctp8q((uint32_t)(ktotal - 16 * full)) : 0;
    const int8x16_t xv = vldrbq_s8(buf + 16 * full - (tail ? 0 : 16));
    const uint32x4_t offs = lanes_u32(0, 5, 10, 15);
    const int8_t *w = p->w;
    const tp_rq *q = p->rq;
    int oc = 0;
    for (; oc + 4 <= cout; oc += 4, q += 4, w += 4 * ktotal) {
        int32_t s[4] = {q[0].bias, q[1].bias, q[2].bias, q[3].bias};
        dot_1x4(s, buf, xv, w, w + ktotal, w + 2 * ktotal, w + 3 * ktotal, full, tail);
        const rq4 r = rq_gather(q, offs);
        vstrbq_s32(out + oc, requant4(from_lanes(s[0], s[1], s[2], s[3]), &r, zp, lo, hi));
    }
    if (oc < cout) { /* the last 1 to 3 channels: lanes past them repeat the last one */
        const int last = cout - 1 - oc;
        const int c1 = 1 < last ? 1 : last, c2 = 2 < last ? 2 : last;
        int32_t s[4] = {q[0].bias, q[c1].bias, q[c2].bias, q[c2].bias};
        dot_1x4(s, buf, xv, w, w + c1 * ktotal, w + c2 * ktotal, w + c2 * ktotal, full, tail);
        const rq4 r = rq_gather(q, lanes_u32(0, 5u * (uint32_t)c1, 5u * (uint32_t)c2, 5u * (uint32_t)c2));
        vstrbq_p_s32(out + oc, requant4(from_lanes(s[0], s[1], s[2], s[3]), &r, zp, lo, hi),
                     vctp32q((uint32_t)(cout - oc)));
    }
}

/* write-ahead: 4 output pixels (gemm_4px / gemm_buf4 / conv_4px: four pixels, channel group by channel group).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
int tp_mve_conv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                   int8_t *y, int oh, int ow, int ors)
{
    if (!p->rq || p->dh != 1 || p->dw != 1) return 0;
    const int cin = p->cin, cout = p->cout, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw;
    const int ktotal = kh * kw * cin, k16 = (ktotal + 15) & ~15;
    const int pointwise = kh == 1 && kw == 1, gather4 = !pointwise && 4 * k16 <= TP_MVE_BUF;
    int8_t buf[TP_MVE_BUF] TP_ALIGN(16);
    for (int oy = 0; oy < oh; oy++) {
        const int iy0 = oy * sh - pt;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + kh > ih ? ih - iy0 : kh;
        int8_t *row = y + (ptrdiff_t)oy * ors;
        for (int ox = 0; ox < ow;) {
            const int ix0 = ox * sw - pl;
            const int inside = ox + 4 <= ow && ky0 == 0 && ky1 == kh && ix0 >= 0 && ix0 + 3 * sw + kw <= iw;
            if (inside && pointwise) {
                gemm_4px(p, x + (ptrdiff_t)iy0 * irs + (ptrdiff_t)ix0 * cin, sw * cin, cin, row + (ptrdiff_t)ox * cout);
                ox += 4;
            } else if (gather4 && ox + 4 <= ow) { /* short windows: gather four, padding included */
                for (int i = 0; i < 4; i++) im2col(buf + i * k16, p, x, ih, iw, irs, iy0, ix0 + i * sw, k16);
                gemm_buf4(p, buf, k16, row + (ptrdiff_t)ox * cout);
                ox += 4;
            } else if (inside && !gather4) {
                conv_4px(p, x + (ptrdiff_t)iy0 * irs + (ptrdiff_t)ix0 * cin, sw * cin, irs, row + (ptrdiff_t)ox * cout);
                ox += 4;
            } else if (k16 <= TP_MVE_BUF) {
                im2col(buf, p, x, ih, iw, irs, iy0, ix0, k16);
                gemm_buf1(p, buf, row + (ptrdiff_t)ox * cout);
                ox += 1;
            } else {
                const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + kw > iw ? iw - ix0 : kw;
                conv_1px(p, x, irs, iy0, ix0, ky0, ky1, kx0, kx1, row + (ptrdiff_t)ox * cout);
                ox += 1;
            }
        }
    }
    return 1;
}

/* --- depthwise ------------------------------------------------------------------------------- */
/* Depthwise taps of 16 full channels of a pixel whose window lies inside the input: the widening
 * multiplies' four int32 quarters accumulate in a, b, e, f (q4-q7: q0-q3 are scratch). */
static inline void dw_inside16(int32x4_t *acc, const int8_t *xr, int irs, const int8_t *w, int c, int kh, int kw)
{
    int32x4_t a = acc[0], b = acc[1], e = acc[2], f = acc[3];
    int rows = kh, t;
    const int8_t *xq;
    __asm__ volatile(
        "1:\n\t"
        "mov %[t], %[kw]\n\t"
        "mov %[xq], %[xr]\n"
        "2:\n\t"
        "vldrb.8 q0, [%[xq]]\n\t"
        "vldrb.8 q1, [%[w]]\n\t"
        "add %[xq], %[xq], %[c]\n\t"
        "add %[w], %[w], %[c]\n\t"
        "vmullb.s8 q2, q0, q1\n\t"
        "vmullt.s8 q3, q0, q1\n\t"
        "vmovlb.s16 q0, q2\n\t"
        "vadd.i32 %q[a], %q[a], q0\n\t"
        "vmovlt.s16 q0, q2\n\t"
        "vadd.i32 %q[b], %q[b], q0\n\t"
        "vmovlb.s16 q0, q3\n\t"
        "vadd.i32 %q[e], %q[e], q0\n\t"
        "vmovlt.s16 q0, q3\n\t"
        "vadd.i32 %q[f], %q[f], q0\n\t"
        "subs %[t], %[t], #1\n\t"
        "bne 2b\n\t"
        "add %[xr], %[xr], %[irs]\n\t"
        "subs %[rows], %[rows], #1\n\t"
        "bne 1b"
        : [a] "+w"(a), [b] "+w"(b), [e] "+w"(e), [f] "+w"(f), [xr] "+r"(xr), [w] "+l"(w), [rows] "+r"(rows),
          [t] "=&r"(t), [xq] "=&r"(xq)
        : [kw] "r"(kw), [c] "r"(c), [irs] "r"(irs)
        : "q0", "q1", "q2", "q3", "memory", "cc");
    acc[0] = a;
    acc[1] = b;
    acc[2] = e;
    acc[3] = f;
}

/* Requantize and store one quarter (4 lanes, channels ch + MVE lane order) of a 16-channel block;
 * prm: the block's parameters (5 x 16 int32), g: the quarter. */
static inline void dw_store(const int32_t *prm, int g, int32x4_t acc, uint32x4_t chans, int ch, int c, int zp,
                            int32x4_t lo, int32x4_t hi, int8_t *out)
{
    const int32_t *q = prm + 4 * g;
    int32x4_t v = vqrdmulhq_s32(vshlq_s32(acc, vld1q_s32(q + 32)), vld1q_s32(q + 16));
    v = vrshlq_s32(vaddq_s32(v, vandq_s32(vshrq_n_s32(v, 31), vld1q_s32(q + 48))), vld1q_s32(q + 64));
    v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, zp), lo), hi);
    const uint32x4_t idx = vaddq_n_u32(chans, (uint32_t)ch);
    vstrbq_scatter_offset_p_s32(out + ch, chans, v, vcmphiq_u32(vdupq_n_u32((uint32_t)c), idx));
}

/* Depthwise 3x3 (or narrower in height), stride 1 along x: 4 channels as int32 lanes (MVE has no
 * lane-wise vector multiply-accumulate: VMUL + VADD), three pixels of a row per block sharing each
 * loaded input column. Per group of 4 channels, the input rows a block reads are copied, with the zero
 * padding written as the input zero point, into a rolling buffer of kh rows x TP_MVE_DW_COLS pixels
 * (4 bytes each), so every pixel, border or not, runs the same block with immediate offsets. */
#define TP_MVE_DW_COLS 20 /* buffer width: 18 output pixels (6 blocks) per column chunk */
#define TP_MVE_DW_CHUNK (TP_MVE_DW_COLS - 2)

/* q5-q7 = bias + taps of 3 pixels at rows[ky] + off + 4 * (0, 1, 2) over kh rows; w: kh x 3 x 4 int8. */
#define TP_DW_3PX                                  \
    "vldrw.32 q5, [%[b]]\n\t"                      \
    "vmov q6, q5\n\t"                              \
    "vmov q7, q5\n"                                \
    "1:\n\t"                                       \
    "ldr %[x], [%[r]], #4\n\t"                     \
    "vldrb.s32 q2, [%[w], #4]\n\t"                 \
    "vldrb.s32 q3, [%[w], #8]\n\t"                 \
    "vldrb.s32 q1, [%[w]], #12\n\t"                \
    "add %[x], %[x], %[off]\n\t"                   \
    "vldrb.s32 q0, [%[x]]\n\t"                     \
    "vmul.i32 q0, q0, q1\n\t"                      \
    "vadd.i32 q5, q5, q0\n\t"                      \
    "vldrb.s32 q0, [%[x], #4]\n\t"                 \
    "vmul.i32 q4, q0, q2\n\t"                      \
    "vadd.i32 q5, q5, q4\n\t"                      \
    "vmul.i32 q0, q0, q1\n\t"                      \
    "vadd.i32 q6, q6, q0\n\t"                      \
    "vldrb.s32 q0, [%[x], #8]\n\t"                 \
    "vmul.i32 q4, q0, q3\n\t"                      \
    "vadd.i32 q5, q5, q4\n\t"                      \
    "vmul.i32 q4, q0, q2\n\t"                      \
    "vadd.i32 q6, q6, q4\n\t"                      \
    "vmul.i32 q0, q0, q1\n\t"                      \
    "vadd.i32 q7, q7, q0\n\t"                      \
    "vldrb.s32 q0, [%[x], #12]\n\t"                \
    "vmul.i32 q4, q0, q3\n\t"                      \
    "vadd.i32 q6, q6, q4\n\t"                      \
    "vmul.i32 q0, q0, q2\n\t"                      \
    "vadd.i32 q7, q7, q0\n\t"                      \
    "vldrb.s32 q0, [%[x], #16]\n\t"                \
    "vmul.i32 q0, q0, q3\n\t"                      \
    "vadd.i32 q7, q7, q0\n\t"                      \
    "subs %[n], %[n], #1\n\t"                      \
    "bne 1b\n\t"

/* acc[0..2] (12 int32): the 3 pixels' accumulators (TP_DW_3PX). */
static inline void dw_3px(int32_t *acc, const int32_t *bias, const int8_t *const *rows, int off, int kh,
                          const int8_t *w)
{
    const int8_t *xp;
    __asm__ volatile(
        TP_DW_3PX
        "vstrw.32 q5, [%[acc]]\n\t"
        "vstrw.32 q6, [%[acc], #16]\n\t"
        "vstrw.32 q7, [%[acc], #32]"
        : [x] "=&l"(xp), [r] "+r"(rows), [w] "+l"(w), [n] "+r"(kh)
        : [acc] "r"(acc), [b] "r"(bias), [off] "r"(off)
        : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "memory", "cc");
}

/* The 3 pixels of TP_DW_3PX requantized (see requant4; prm: lsh, mult, nmask, -rsh, lo, hi, 4 lanes each)
 * and stored, 4 channels each, at out, out + c, out + 2c. */
static inline void dw_3px_rq(int8_t *out, int c, int zp, const int32_t *prm, const int32_t *bias,
                             const int8_t *const *rows, int off, int kh, const int8_t *w)
{
    const int8_t *xp;
    __asm__ volatile(
        TP_DW_3PX
        "vldrw.32 q1, [%[p]]\n\t"
        "vldrw.32 q2, [%[p], #16]\n\t"
        "vldrw.32 q3, [%[p], #32]\n\t"
        "vldrw.32 q4, [%[p], #48]\n\t"
        "vshl.s32 q5, q5, q1\n\t"
        "vshl.s32 q6, q6, q1\n\t"
        "vshl.s32 q7, q7, q1\n\t"
        "vqrdmulh.s32 q5, q5, q2\n\t"
        "vqrdmulh.s32 q6, q6, q2\n\t"
        "vqrdmulh.s32 q7, q7, q2\n\t"
        "vshr.s32 q0, q5, #31\n\t"
        "vand q0, q0, q3\n\t"
        "vadd.i32 q5, q5, q0\n\t"
        "vshr.s32 q0, q6, #31\n\t"
        "vand q0, q0, q3\n\t"
        "vadd.i32 q6, q6, q0\n\t"
        "vshr.s32 q0, q7, #31\n\t"
        "vand q0, q0, q3\n\t"
        "vadd.i32 q7, q7, q0\n\t"
        "vrshl.s32 q5, q5, q4\n\t"
        "vrshl.s32 q6, q6, q4\n\t"
        "vrshl.s32 q7, q7, q4\n\t"
        "vldrw.32 q1, [%[p], #64]\n\t"
        "vldrw.32 q2, [%[p], #80]\n\t"
        "vadd.i32 q5, q5, %[zp]\n\t"
        "vadd.i32 q6, q6, %[zp]\n\t"
        "vadd.i32 q7, q7, %[zp]\n\t"
        "vmax.s32 q5, q5, q1\n\t"
        "vmax.s32 q6, q6, q1\n\t"
        "vmax.s32 q7, q7, q1\n\t"
        "vmin.s32 q5, q5, q2\n\t"
        "vmin.s32 q6, q6, q2\n\t"
        "vmin.s32 q7, q7, q2\n\t"
        "vstrb.32 q5, [%[o]]\n\t"
        "add %[o], %[o], %[c]\n\t"
        "vstrb.32 q6, [%[o]]\n\t"
        "add %[o], %[o], %[c]\n\t"
        "vstrb.32 q7, [%[o]]"
        : [x] "=&l"(xp), [r] "+r"(rows), [w] "+l"(w), [n] "+r"(kh), [o] "+l"(out)
        : [b] "r"(bias), [off] "r"(off), [p] "r"(prm), [c] "r"(c), [zp] "r"(zp)
        : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "memory", "cc");
}

/* Buffer row: pixels ix0 + b (b < TP_MVE_DW_COLS) of input row iy (zero point outside the input). */
static void dw_fill(uint32_t *row, const int8_t *x, int ih, int iw, int irs, int iy, int ix0, int c, int ch,
                    int n, uint32_t zp4)
{
    int b = 0;
    if (iy >= 0 && iy < ih) {
        const int8_t *src = x + (ptrdiff_t)iy * irs + ch;
        const int b0 = ix0 < 0 ? -ix0 : 0, b1 = iw - ix0 < TP_MVE_DW_COLS ? iw - ix0 : TP_MVE_DW_COLS;
        for (; b < b0; b++) row[b] = zp4;
        src += (ptrdiff_t)(ix0 + b) * c;
        if (n == 4)
            for (; b < b1; b++, src += c) memcpy(row + b, src, 4);
        else
            for (; b < b1; b++, src += c) {
                row[b] = zp4;
                memcpy(row + b, src, (size_t)n);
            }
    }
    for (; b < TP_MVE_DW_COLS; b++) row[b] = zp4;
}

/* One group of n <= 4 channels from ch over the whole output window. */
__attribute__((noinline)) static void dw_k3_group(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs,
                                                  int pt, int pl, int8_t *y, int oh, int ow, int ors, int ch, int n)
{
    const int c = p->cout, kh = p->kh, sh = p->sh, zp = p->out_zp, last = c - 1;
    const uint32_t zp4 = (uint8_t)p->in_zp * 0x01010101u;
    uint32_t buf[3][TP_MVE_DW_COLS];
    int8_t w[3 * 12];
    int32_t acc[12] TP_ALIGN(16), bias[4] TP_ALIGN(16), prm[24] TP_ALIGN(16);
    const int8_t *rows[3];
    for (int t = 0; t < kh * 3; t++) {
        memset(w + 4 * t, 0, 4);
        memcpy(w + 4 * t, p->w + (ptrdiff_t)t * c + ch, (size_t)n);
    }
    const uint32_t c1 = ch + 1 < last ? ch + 1 : last, c2 = ch + 2 < last ? ch + 2 : last,
                   c3 = ch + 3 < last ? ch + 3 : last;
    const uint32x4_t offs = lanes_u32(5u * (uint32_t)ch, 5u * c1, 5u * c2, 5u * c3);
    const rq4 r = rq_gather(p->rq, offs);
    vst1q_s32(bias, vldrwq_gather_shifted_offset_s32((const int32_t *)p->rq, offs));
    vst1q_s32(prm, r.lsh), vst1q_s32(prm + 4, r.mult), vst1q_s32(prm + 8, r.nmask), vst1q_s32(prm + 12, r.negrsh);
    vst1q_s32(prm + 16, vdupq_n_s32(p->act_min)), vst1q_s32(prm + 20, vdupq_n_s32(p->act_max));
    for (int ox0 = 0; ox0 < ow; ox0 += TP_MVE_DW_CHUNK) {
        const int ix0 = ox0 - pl, nx = ow - ox0 < TP_MVE_DW_CHUNK ? ow - ox0 : TP_MVE_DW_CHUNK;
        int held[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
        for (int oy = 0; oy < oh; oy++) {
            const int iy0 = oy * sh - pt;
            for (int ky = 0; ky < kh; ky++) {
                const int iy = iy0 + ky, slot = (iy + pt) % kh;
                if (held[slot] != iy) {
                    dw_fill(buf[slot], x, ih, iw, irs, iy, ix0, c, ch, n, zp4);
                    held[slot] = iy;
                }
                rows[ky] = (const int8_t *)buf[slot];
            }
            int8_t *out = y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox0 * c + ch;
            for (int i = 0; i < nx; i += 3, out += 3 * c) {
                if (n == 4 && i + 3 <= nx) {
                    dw_3px_rq(out, c, zp, prm, bias, rows, 4 * i, kh, w);
                    continue;
                }
                dw_3px(acc, bias, rows, 4 * i, kh, w);
                const rq4 q = {vld1q_s32(prm + 4), vld1q_s32(prm), vld1q_s32(prm + 8), vld1q_s32(prm + 12)};
                for (int k = 0; k < 3 && i + k < nx; k++)
                    vstrbq_p_s32(out + k * c, requant4(vld1q_s32(acc + 4 * k), &q, zp, vld1q_s32(prm + 16),
                                                       vld1q_s32(prm + 20)), vctp32q((uint32_t)n));
            }
        }
    }
}


/* Any other depthwise shape: 16 channels per block (widening multiplies), one pixel at a time. */
__attribute__((noinline)) static void dw_any(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt,
                                             int pl, int8_t *y, int oh, int ow, int ors)
{
    const int c = p->cout, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, zp = p->out_zp;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const int8x16_t zpv = vdupq_n_s8((int8_t)p->in_zp);
    static const uint32_t lanes[16] = {0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15};
    for (int oy = 0; oy < oh; oy++) {
        const int iy0 = oy * sh - pt;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + kh > ih ? ih - iy0 : kh;
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * sw - pl;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + kw > iw ? iw - ix0 : kw;
            int8_t *out = y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox * c;
            const int32_t *prm = p->mve;
            for (int ch = 0; ch < c; ch += 16, prm += 80) {
                int32x4_t acc[4] = {vld1q_s32(prm), vld1q_s32(prm + 4), vld1q_s32(prm + 8), vld1q_s32(prm + 12)};
                if (ch + 16 <= c && ky0 == 0 && ky1 == kh && kx0 == 0 && kx1 == kw) {
                    dw_inside16(acc, x + (ptrdiff_t)iy0 * irs + (ptrdiff_t)ix0 * c + ch, irs, p->w + ch, c, kh, kw);
                } else { /* channel tail or a window reaching into the padding: taps there read the zero point */
                    int32x4_t a = acc[0], b = acc[1], e = acc[2], f = acc[3];
                    const mve_pred16_t pr = vctp8q((uint32_t)(c - ch));
                    const int8_t *wt = p->w + ch;
                    for (int ky = 0; ky < kh; ky++) {
                        const int rin = ky >= ky0 && ky < ky1;
                        const int8_t *xr = x + (ptrdiff_t)(iy0 + ky) * irs + (ptrdiff_t)ix0 * c + ch;
                        for (int kx = 0; kx < kw; kx++, wt += c) {
                            const int8x16_t wv = vldrbq_z_s8(wt, pr);
                            const int8x16_t xv = rin && kx >= kx0 && kx < kx1 ? vldrbq_z_s8(xr + (ptrdiff_t)kx * c, pr)
                                                                                : zpv;
                            const int16x8_t even = vmullbq_int_s8(xv, wv), odd = vmulltq_int_s8(xv, wv);
                            a = vaddq_s32(a, vmovlbq_s16(even));
                            b = vaddq_s32(b, vmovltq_s16(even));
                            e = vaddq_s32(e, vmovlbq_s16(odd));
                            f = vaddq_s32(f, vmovltq_s16(odd));
                        }
                    }
                    acc[0] = a;
                    acc[1] = b;
                    acc[2] = e;
                    acc[3] = f;
                }
                for (int g = 0; g < 4; g++) dw_store(prm, g, acc[g], vld1q_u32(lanes + 4 * g), ch, c, zp, lo, hi, out);
            }
        }
    }
}

/* write-ahead: 1 output pixel in place (dw_any, one pixel at a time; the 3x3 path runs channel groups over the whole image and is never used in place).
 * In place, at most this many pixels of one output row are written before every input they
 * read has been read (tinypatch.analysis.inplace_shift bounds the shift with it; tests parse it). */
int tp_mve_dwconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int pt, int pl,
                     int8_t *y, int oh, int ow, int ors)
{
    if (!p->mve || p->dm != 1 || p->dh != 1 || p->dw != 1) return 0;
    if (p->kw != 3 || p->kh > 3 || p->sw != 1 || p->inplace) { /* the 3x3 path runs channel groups over the image */
        dw_any(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors);
        return 1;
    }
    for (int ch = 0; ch < p->cout; ch += 4)
        dw_k3_group(p, x, ih, iw, irs, pt, pl, y, oh, ow, ors, ch, p->cout - ch < 4 ? p->cout - ch : 4);
    return 1;
}

/* --- transpose convolution ----------------------------------------------------------------- */
/* s_j += sum_c w_j[c] * (x[c] - zp) over n bytes, 8 channels per VMLADAVA on int16 lanes (widening
 * loads, predicated on the last 1 to 7: the zero-loaded weights make those lanes 0). */
static inline void tconv_tap4(int32_t *s, const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                              const int8_t *w3, int n, int zp)
{
    int32_t s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
    for (int c = 0; c < n; c += 8) {
        const mve_pred16_t pr = vctp16q((uint32_t)(n - c));
        const int16x8_t xv = vsubq_n_s16(vldrbq_z_s16(x + c, pr), (int16_t)zp);
        s0 = vmladavaq_s16(s0, xv, vldrbq_z_s16(w0 + c, pr));
        s1 = vmladavaq_s16(s1, xv, vldrbq_z_s16(w1 + c, pr));
        s2 = vmladavaq_s16(s2, xv, vldrbq_z_s16(w2 + c, pr));
        s3 = vmladavaq_s16(s3, xv, vldrbq_z_s16(w3 + c, pr));
    }
    s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
}

#define TP_MVE_TCONV_TAPS 64 /* most (ky, kx) taps one output pixel may gather on this path */

/* Transpose convolution gathered per output pixel (the taps landing on it, as tp_tconv_s8 finds
 * them), 4 output channels per pass sharing each input load, requantized as one vector (lanes past
 * the last channel repeat it and are not stored). The bias is the real one (no zero point folded). */
int tp_mve_tconv_s8(const tp_conv_p *p, const int8_t *x, int ih, int iw, int irs, int iy0, int ix0, int oyp,
                    int oxp, int8_t *y, int oh, int ow, int ors)
{
    const int cin = p->cin, cout = p->cout, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, zp = p->in_zp;
    if (!p->rq || kh * kw > TP_MVE_TCONV_TAPS) return 0;
    const int ktaps = kh * kw * cin;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const int8_t *xs[TP_MVE_TCONV_TAPS];
    int woff[TP_MVE_TCONV_TAPS];
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            int n = 0;
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
                    xs[n] = x + (ptrdiff_t)iy * irs + (ptrdiff_t)ix * cin;
                    woff[n++] = (ky * kw + kx) * cin;
                }
            }
            int8_t *out = y + (ptrdiff_t)oy * ors + (ptrdiff_t)ox * cout;
            for (int oc = 0; oc < cout; oc += 4) {
                const int left = cout - 1 - oc;
                const int c1 = 1 < left ? 1 : left, c2 = 2 < left ? 2 : left, c3 = 3 < left ? 3 : left;
                const int8_t *w = p->w + (ptrdiff_t)oc * ktaps;
                int32_t s[4] = {0, 0, 0, 0};
                if (p->bias) {
                    s[0] = p->bias[oc], s[1] = p->bias[oc + c1], s[2] = p->bias[oc + c2], s[3] = p->bias[oc + c3];
                }
                for (int t = 0; t < n; t++)
                    tconv_tap4(s, xs[t], w + woff[t], w + c1 * ktaps + woff[t], w + c2 * ktaps + woff[t],
                               w + c3 * ktaps + woff[t], cin, zp);
                const rq4 r = rq_gather(p->rq + oc, lanes_u32(0, 5u * (uint32_t)c1, 5u * (uint32_t)c2,
                                                             5u * (uint32_t)c3));
                vstrbq_p_s32(out + oc, requant4(from_lanes(s[0], s[1], s[2], s[3]), &r, p->out_zp, lo, hi),
                             vctp32q((uint32_t)(cout - oc)));
            }
        }
    }
    return 1;
}
#else
typedef int tp_fast_mve_disabled; /* no Helium, or built without -DTP_FAST */
#endif
