/* kernel_neon.c — AArch64 NEON kernels: 8 columns per step, each plane byte turned into two 4-lane masks by vtst. */
#include "internal.h"

#include <arm_neon.h>
#include <math.h>
#include <pthread.h>

#define MAX_FIXED_PLANES 7 /* as in kernel_avx512.c: plane sums stay in registers up to 7 planes */

/* lane l of the low / high mask is set when bit l / l + 4 of the byte is */
static const uint32_t bit_lo[4] = {1u, 2u, 4u, 8u};
static const uint32_t bit_hi[4] = {16u, 32u, 64u, 128u};


/* x masked lane by lane: x where the mask is all ones, +0.0f elsewhere. */
static inline float32x4_t masked(uint32x4_t mask, float32x4_t x) {
    return vreinterpretq_f32_u32(vandq_u32(mask, vreinterpretq_u32_f32(x)));
}

/* One row, one token; P is a compile-time constant at each call site (see kernel_avx512.c). Each 8-column
 * step loads x once per activation vector and adds the masked halves into two chains per plane. */
static inline __attribute__((always_inline)) float row_dot(const struct pbs2p_layer *L, size_t i, const float *xt,
                                                          int32_t P) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, nr = pbs2p_block_rows(L, i);
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    const int shared_x = L->n_xs == 1;
    const uint32x4_t blo = vld1q_u32(bit_lo), bhi = vld1q_u32(bit_hi);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const uint32_t *pb[MAX_FIXED_PLANES];
        float32x4_t s[MAX_FIXED_PLANES], s2[MAX_FIXED_PLANES];
        for (int32_t p = 0; p < P; p++) { s[p] = s2[p] = vdupq_n_f32(0.0f); pb[p] = pbs2p_plane_bits(L, i, g, (size_t)p); }
        for (size_t c = 0; c < len; c += 8) {
            const float32x4_t xv = vld1q_f32(xt + c0 + c), xv2 = vld1q_f32(xt + c0 + c + 4);
            for (int32_t p = 0; p < P; p++) {
                const uint32x4_t b = vdupq_n_u32(pbs2p_plane_field(pb[p], nr, c, 8));
                const float *xp = xt + (size_t)L->plane_xs[p] * xstride + c0 + c;
                s[p] = vaddq_f32(s[p], masked(vtstq_u32(b, blo), shared_x ? xv : vld1q_f32(xp)));
                s2[p] = vaddq_f32(s2[p], masked(vtstq_u32(b, bhi), shared_x ? xv2 : vld1q_f32(xp + 4)));
            }
        }
        for (int32_t p = 0; p < P; p++)
            acc = vfmaq_f32(acc, vdupq_n_f32(pbs2p_plane_coef(L, i, g, (size_t)p)), vaddq_f32(s[p], s2[p]));
    }
    return vaddvq_f32(acc);
}

/* Any plane count, and planes over their own words (internal.h): one plane at a time, two chains. */
static float row_dot_any(const struct pbs2p_layer *L, size_t i, const float *xt) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, nr = pbs2p_block_rows(L, i);
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    const uint32x4_t blo = vld1q_u32(bit_lo), bhi = vld1q_u32(bit_hi);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        for (size_t p = 0; p < P; p++) {
            const uint32_t *b = pbs2p_plane_bits(L, i, g, p);
            const float *x = xt + (size_t)L->plane_xs[p] * xstride + c0;
            size_t lo, hi;
            pbs2p_plane_words(L, g, p, &lo, &hi);
            const size_t c1 = 32 * hi < len ? 32 * hi : len;
            float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
            for (size_t c = 32 * lo; c < c1; c += 8) {
                const uint32x4_t bv = vdupq_n_u32(pbs2p_plane_field(b, nr, c - 32 * lo, 8));
                s0 = vaddq_f32(s0, masked(vtstq_u32(bv, blo), vld1q_f32(x + c)));
                s1 = vaddq_f32(s1, masked(vtstq_u32(bv, bhi), vld1q_f32(x + c + 4)));
            }
            acc = vfmaq_f32(acc, vdupq_n_f32(pbs2p_plane_coef(L, i, g, p)), vaddq_f32(s0, s1));
        }
    }
    return vaddvq_f32(acc);
}

void pbs2p_rows_neon(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                     float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t tstride = (size_t)L->n_xs * ((size_t)L->cols + PBS2P_XS_PAD);
    for (size_t i = (size_t)row0; i < (size_t)row1; i++) {
        for (size_t t = 0; t < n_tokens; t++) {
            const float *xt = xs + t * tstride;
            float y;
            switch (L->word_lo ? 0 : L->planes) {
            case 2: y = row_dot(L, i, xt, 2); break;
            case 3: y = row_dot(L, i, xt, 3); break;
            case 4: y = row_dot(L, i, xt, 4); break;
            case 5: y = row_dot(L, i, xt, 5); break;
            case 6: y = row_dot(L, i, xt, 6); break;
            case 7: y = row_dot(L, i, xt, 7); break;
            default: y = row_dot_any(L, i, xt); break;
            }
            Y[t * ldy + i] = y;
        }
    }
}

/* GEMM, TB tokens at a time: decode 8 weights once (w = sum_p coef_p * bit_p, low and high halves), then
 * two FMAs per token. A token's operations do not depend on TB, so gemm is batch-invariant. */
static inline __attribute__((always_inline)) void row_block(const struct pbs2p_layer *L, size_t i, const float *xt,
                                                           size_t tstride, float *y, size_t ldy, int TB) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, nr = pbs2p_block_rows(L, i);
    const size_t gs = (size_t)L->group_size;
    const uint32x4_t blo = vld1q_u32(bit_lo), bhi = vld1q_u32(bit_hi);
    float32x4_t acc[8];
    for (int t = 0; t < TB; t++) acc[t] = vdupq_n_f32(0.0f);
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const uint32_t *gb = pbs2p_plane_bits(L, i, g, 0); /* plane p starts p * W * nr words later */
        const size_t pstride = (size_t)L->words * nr;
        for (size_t c = 0; c < len; c += 8) {
            float32x4_t w0 = vdupq_n_f32(0.0f), w1 = vdupq_n_f32(0.0f);
            for (size_t p = 0; p < P; p++) {
                const uint32x4_t bv = vdupq_n_u32(pbs2p_plane_field(gb + p * pstride, nr, c, 8));
                const float32x4_t cv = vdupq_n_f32(pbs2p_plane_coef(L, i, g, p));
                w0 = vaddq_f32(w0, masked(vtstq_u32(bv, blo), cv));
                w1 = vaddq_f32(w1, masked(vtstq_u32(bv, bhi), cv));
            }
            for (int t = 0; t < TB; t++) {
                const float *x = xt + (size_t)t * tstride + c0 + c;
                acc[t] = vfmaq_f32(acc[t], w0, vld1q_f32(x));
                acc[t] = vfmaq_f32(acc[t], w1, vld1q_f32(x + 4));
            }
        }
    }
    for (int t = 0; t < TB; t++) y[(size_t)t * ldy] = vaddvq_f32(acc[t]);
}

void pbs2p_gemm_rows_neon(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                          float *Y, size_t ldy, int32_t row0, int32_t row1) {
    if (L->n_xs != 1 || L->word_lo) { /* per-region scaled activations, planes over their own words: token by token */
        pbs2p_rows_neon(L, xs, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const size_t tstride = (size_t)L->cols + PBS2P_XS_PAD;
    for (size_t i = (size_t)row0; i < (size_t)row1; i++) {
        size_t t = 0;
        for (; t + 8 <= n_tokens; t += 8) row_block(L, i, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 8);
        for (; t + 4 <= n_tokens; t += 4) row_block(L, i, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 4);
        for (; t < n_tokens; t++) row_block(L, i, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 1);
    }
}

/* A kept_signs layer's +1 words (internal.h) without pdep: where M <= 8 every octet of a word keeps exactly 4 columns,
 * so octet j's +1 byte is deposit8[its kept byte][sign nibble j]; built once (pthread_once). 8:16's octets keep 0 to
 * 8: the portable deposit. */
static uint8_t deposit8[256][16];
static pthread_once_t deposit8_once = PTHREAD_ONCE_INIT;
static void deposit8_build(void) {
    for (uint32_t k = 0; k < 256; k++)
        for (uint32_t v = 0; v < 16; v++) deposit8[k][v] = (uint8_t)pbs2p_deposit32(v, k);
}

static inline uint32_t plus_word(uint32_t kept, uint32_t signs, int octets4) {
    if (!octets4) return pbs2p_deposit32(signs, kept);
    return (uint32_t)deposit8[kept & 255u][signs & 15u] | (uint32_t)deposit8[kept >> 8 & 255u][signs >> 4 & 15u] << 8 |
           (uint32_t)deposit8[kept >> 16 & 255u][signs >> 8 & 15u] << 16 |
           (uint32_t)deposit8[kept >> 24][signs >> 12 & 15u] << 24;
}

/* Tokens of a prompt that share each plane word's byte masks (the masks cost 5 of a word's 12 vector operations). */
#define Q8_TOKENS 8

/* The products on int8 activations (internal.h): per row and plane word, the word's 32 bits become byte masks (each
 * of its bytes copied to 8 lanes, vtst against the lane's bit) once for up to Q8_TOKENS tokens; for each token the
 * codes they keep are summed exactly (widening pairwise adds) and the sum is scaled by its block's d, in the
 * reference's order (kernel_q8_ref.c), so a token's result does not depend on the others. */
void pbs2p_rows_q8_neon(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                        int32_t row0, int32_t row1) {
    static const uint8_t spread[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                          {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t lo = vld1q_u8(spread[0]), hi = vld1q_u8(spread[1]), bits = vld1q_u8(bit);
    const size_t G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    const int octets4 = L->m <= 8;
    if (L->kept_signs) pthread_once(&deposit8_once, deposit8_build);
    for (size_t t0 = 0; t0 < n_tokens; t0 += Q8_TOKENS) {
        const size_t tt = n_tokens - t0 < Q8_TOKENS ? n_tokens - t0 : Q8_TOKENS;
        pbs2p_q8_acts At[Q8_TOKENS];
        for (size_t t = 0; t < tt; t++) At[t] = pbs2p_q8_acts_at(A, t0 + t);
        for (size_t i = (size_t)row0; i < (size_t)row1; i++) {
            const size_t nr = pbs2p_block_rows(L, i);
            float acc[Q8_TOKENS] = {0.0f};
            for (size_t g = 0; g < G; g++)
                for (size_t p = 0; p < P; p++) {
                    /* kept_signs: plane 1's words from plane 0's and the signs */
                    const int rebuilt = L->kept_signs && p == 1;
                    const uint32_t *b = pbs2p_plane_bits(L, i, g, rebuilt ? 0 : p);
                    const uint16_t *sg = rebuilt ? pbs2p_plane_signs(L, i, g) : NULL;
                    const size_t block0 = ((size_t)L->plane_xs[p] * G + g) * W;
                    size_t w0, w1;
                    pbs2p_plane_words(L, g, p, &w0, &w1);
                    float s[Q8_TOKENS] = {0.0f};
                    for (size_t w = w0; w < w1; w++) {
                        const uint32_t bw = rebuilt ? plus_word(b[w * nr], sg[w * nr], octets4) : b[(w - w0) * nr];
                        const uint8x16_t word = vreinterpretq_u8_u32(vdupq_n_u32(bw));
                        const int8x16_t m0 = vreinterpretq_s8_u8(vtstq_u8(vqtbl1q_u8(word, lo), bits));
                        const int8x16_t m1 = vreinterpretq_s8_u8(vtstq_u8(vqtbl1q_u8(word, hi), bits));
                        for (size_t t = 0; t < tt; t++) {
                            const int8_t *q = At[t].q + (block0 + w) * PBS2P_ACT_BLOCK;
                            const int8x16_t c0 = vandq_s8(vld1q_s8(q), m0), c1 = vandq_s8(vld1q_s8(q + 16), m1);
                            const int32_t sum = vaddlvq_s16(vaddq_s16(vpaddlq_s8(c0), vpaddlq_s8(c1)));
                            s[t] = fmaf((float)sum, At[t].d[block0 + w], s[t]);
                        }
                    }
                    const float c = pbs2p_plane_coef(L, i, g, p);
                    for (size_t t = 0; t < tt; t++) acc[t] = fmaf(c, s[t], acc[t]);
                }
            for (size_t t = 0; t < tt; t++) Y[(t0 + t) * ldy + i] = acc[t];
        }
    }
}
