/* kernel_avx2.c — AVX2 + FMA kernel: 8 columns per step, each plane byte expanded to a lane mask by table lookup. */
#include "internal.h"

#include <immintrin.h>

/* lane_masks[b][l] = all ones when bit l of b is set: 256 x 32 bytes of constants (no start-up code). */
#define E1(b) { -((b) & 1), -((b) >> 1 & 1), -((b) >> 2 & 1), -((b) >> 3 & 1), \
                -((b) >> 4 & 1), -((b) >> 5 & 1), -((b) >> 6 & 1), -((b) >> 7 & 1) }
#define E4(b) E1(b), E1((b) + 1), E1((b) + 2), E1((b) + 3)
#define E16(b) E4(b), E4((b) + 4), E4((b) + 8), E4((b) + 12)
#define E64(b) E16(b), E16((b) + 16), E16((b) + 32), E16((b) + 48)
static const int32_t lane_masks[256][8] __attribute__((aligned(32))) = { E64(0), E64(64), E64(128), E64(192) };

#define MAX_FIXED_PLANES 7

static inline __m256 masked(uint8_t bits8, __m256 x) {
    return _mm256_and_ps(_mm256_load_ps((const float *)lane_masks[bits8]), x);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One row, one token; P constant at each call site (see kernel_avx512.c). Plane bytes are read directly:
 * x86 is little-endian, so byte c/8 of a plane's words holds its columns c..c+7. */
static inline __attribute__((always_inline)) float row_dot(const struct pbs2p_layer *L, const uint64_t *rbits,
                                                          const float *rcoef, const float *xt, int32_t P) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, W = (size_t)L->words;
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    const int shared_x = L->n_xs == 1;
    __m256 acc = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const uint8_t *gb = (const uint8_t *)(rbits + g * (size_t)P * W);
        __m256 s[MAX_FIXED_PLANES];
        for (int32_t p = 0; p < P; p++) s[p] = _mm256_setzero_ps();
        for (size_t c = 0; c < len; c += 8) {
            const __m256 xv = _mm256_loadu_ps(xt + c0 + c);
            for (int32_t p = 0; p < P; p++) {
                const __m256 xp = shared_x ? xv : _mm256_loadu_ps(xt + (size_t)L->plane_xs[p] * xstride + c0 + c);
                s[p] = _mm256_add_ps(s[p], masked(gb[(size_t)p * W * 8 + c / 8], xp));
            }
        }
        for (int32_t p = 0; p < P; p++) acc = _mm256_fmadd_ps(_mm256_set1_ps(rcoef[g * (size_t)P + p]), s[p], acc);
    }
    return hsum(acc);
}

static float row_dot_any(const struct pbs2p_layer *L, const uint64_t *rbits, const float *rcoef, const float *xt) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    __m256 acc = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        for (size_t p = 0; p < P; p++) {
            const uint8_t *b = (const uint8_t *)(rbits + (g * P + p) * W);
            const float *x = xt + (size_t)L->plane_xs[p] * xstride + c0;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
            size_t c = 0;
            for (; c + 16 <= len; c += 16) {
                s0 = _mm256_add_ps(s0, masked(b[c / 8], _mm256_loadu_ps(x + c)));
                s1 = _mm256_add_ps(s1, masked(b[c / 8 + 1], _mm256_loadu_ps(x + c + 8)));
            }
            for (; c < len; c += 8) s0 = _mm256_add_ps(s0, masked(b[c / 8], _mm256_loadu_ps(x + c)));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(rcoef[g * P + p]), _mm256_add_ps(s0, s1), acc);
        }
    }
    return hsum(acc);
}

void pbs2p_rows_avx2(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                     float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    const size_t tstride = (size_t)L->n_xs * ((size_t)L->cols + PBS2P_XS_PAD);
    for (int32_t i = row0; i < row1; i++) {
        const uint64_t *rbits = L->bits + (size_t)i * G * P * W;
        const float *rcoef = L->coef + (size_t)i * G * P;
        for (size_t t = 0; t < n_tokens; t++) {
            const float *xt = xs + t * tstride;
            float y;
            switch (L->planes) {
            case 2: y = row_dot(L, rbits, rcoef, xt, 2); break;
            case 3: y = row_dot(L, rbits, rcoef, xt, 3); break;
            case 4: y = row_dot(L, rbits, rcoef, xt, 4); break;
            case 5: y = row_dot(L, rbits, rcoef, xt, 5); break;
            case 6: y = row_dot(L, rbits, rcoef, xt, 6); break;
            case 7: y = row_dot(L, rbits, rcoef, xt, 7); break;
            default: y = row_dot_any(L, rbits, rcoef, xt); break;
            }
            Y[t * ldy + (size_t)i] = y;
        }
    }
}

/* GEMM, TB tokens at a time: decode 8 weights once (w = sum_p coef_p * bit_p), then one FMA per token.
 * Batch-invariant like kernel_avx512.c's. */
static inline __attribute__((always_inline)) void row_block(const struct pbs2p_layer *L, const uint64_t *rbits,
                                                           const float *rcoef, const float *xt, size_t tstride,
                                                           float *y, size_t ldy, int TB) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    const size_t gs = (size_t)L->group_size;
    __m256 acc[8];
    for (int t = 0; t < TB; t++) acc[t] = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const uint8_t *gb = (const uint8_t *)(rbits + g * P * W);
        const float *cf = rcoef + g * P;
        for (size_t c = 0; c < len; c += 8) {
            __m256 w = _mm256_setzero_ps();
            for (size_t p = 0; p < P; p++) w = _mm256_add_ps(w, masked(gb[p * W * 8 + c / 8], _mm256_set1_ps(cf[p])));
            for (int t = 0; t < TB; t++)
                acc[t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xt + (size_t)t * tstride + c0 + c), acc[t]);
        }
    }
    for (int t = 0; t < TB; t++) y[(size_t)t * ldy] = hsum(acc[t]);
}

void pbs2p_gemm_rows_avx2(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                          float *Y, size_t ldy, int32_t row0, int32_t row1) {
    if (L->n_xs != 1) {
        pbs2p_rows_avx2(L, xs, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const size_t G = (size_t)L->groups, P = (size_t)L->planes, W = (size_t)L->words;
    const size_t tstride = (size_t)L->cols + PBS2P_XS_PAD;
    for (int32_t i = row0; i < row1; i++) {
        const uint64_t *rbits = L->bits + (size_t)i * G * P * W;
        const float *rcoef = L->coef + (size_t)i * G * P;
        size_t t = 0;
        for (; t + 8 <= n_tokens; t += 8) row_block(L, rbits, rcoef, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 8);
        for (; t + 4 <= n_tokens; t += 4) row_block(L, rbits, rcoef, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 4);
        for (; t < n_tokens; t++) row_block(L, rbits, rcoef, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 1);
    }
}
