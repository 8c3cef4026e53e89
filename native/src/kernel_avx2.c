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

/* NR rows (i .. i+NR-1, one row block) x one token; P and NR compile-time constants at each call site. Each
 * 8-column step loads x once for the NR rows and adds the masked x into one chain per row and plane; a row's
 * operations and their order do not depend on NR, so results are the same however rows are grouped.
 * Plane bytes come from 32-bit words interleaved by row block (internal.h): row i+r's word is at +r. */
static inline __attribute__((always_inline)) void rows_dot(const struct pbs2p_layer *L, size_t i, const float *xt,
                                                          int32_t P, int NR, float *y) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, nr = pbs2p_block_rows(L, i);
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    const int shared_x = L->n_xs == 1;
    __m256 acc[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const uint32_t *pb[MAX_FIXED_PLANES];
        __m256 s[4][MAX_FIXED_PLANES];
        for (int32_t p = 0; p < P; p++) {
            pb[p] = pbs2p_plane_bits(L, i, g, (size_t)p);
            for (int r = 0; r < NR; r++) s[r][p] = _mm256_setzero_ps();
        }
        for (size_t w = 0; 32 * w < len; w++) { /* one 32-bit word per row and plane, then its bytes */
            uint32_t word[4][MAX_FIXED_PLANES];
            for (int32_t p = 0; p < P; p++)
                for (int r = 0; r < NR; r++) word[r][p] = pb[p][w * nr + (size_t)r];
            for (size_t c = 32 * w; c < 32 * w + 32 && c < len; c += 8) {
                const __m256 xv = _mm256_loadu_ps(xt + c0 + c);
                for (int32_t p = 0; p < P; p++) {
                    const __m256 xp = shared_x ? xv : _mm256_loadu_ps(xt + (size_t)L->plane_xs[p] * xstride + c0 + c);
                    for (int r = 0; r < NR; r++)
                        s[r][p] = _mm256_add_ps(s[r][p], masked((uint8_t)(word[r][p] >> (c % 32)), xp));
                }
            }
        }
        for (int r = 0; r < NR; r++)
            for (int32_t p = 0; p < P; p++)
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(pbs2p_plane_coef(L, i + (size_t)r, g, (size_t)p)), s[r][p], acc[r]);
    }
    for (int r = 0; r < NR; r++) y[r] = hsum(acc[r]);
}

static float row_dot_any(const struct pbs2p_layer *L, size_t i, const float *xt) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, nr = pbs2p_block_rows(L, i);
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    __m256 acc = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        for (size_t p = 0; p < P; p++) {
            const uint32_t *b = pbs2p_plane_bits(L, i, g, p);
            const float *x = xt + (size_t)L->plane_xs[p] * xstride + c0;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
            size_t c = 0;
            for (; c + 16 <= len; c += 16) {
                const uint32_t b16 = pbs2p_plane_field(b, nr, c, 16);
                s0 = _mm256_add_ps(s0, masked((uint8_t)b16, _mm256_loadu_ps(x + c)));
                s1 = _mm256_add_ps(s1, masked((uint8_t)(b16 >> 8), _mm256_loadu_ps(x + c + 8)));
            }
            for (; c < len; c += 8) s0 = _mm256_add_ps(s0, masked((uint8_t)pbs2p_plane_field(b, nr, c, 8), _mm256_loadu_ps(x + c)));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(pbs2p_plane_coef(L, i, g, p)), _mm256_add_ps(s0, s1), acc);
        }
    }
    return hsum(acc);
}

/* Rows i .. i+NR-1 with the widest grouping that keeps the P * NR plane sums in registers. */
#define ROWS(P_, NR_) rows_dot(L, i, xt, P_, NR_, y)
static void rows_group(const struct pbs2p_layer *L, size_t i, const float *xt, int NR, float *y) {
    switch (L->planes * 8 + NR) {
    case 2 * 8 + 4: ROWS(2, 4); return;
    case 3 * 8 + 4: ROWS(3, 4); return;
    case 4 * 8 + 2: ROWS(4, 2); return;
    case 5 * 8 + 2: ROWS(5, 2); return;
    case 6 * 8 + 2: ROWS(6, 2); return;
    case 7 * 8 + 2: ROWS(7, 2); return;
    }
    for (int r = 0; r < NR; r++) {
        switch (L->planes) {
        case 2: rows_dot(L, i + (size_t)r, xt, 2, 1, y + r); break;
        case 3: rows_dot(L, i + (size_t)r, xt, 3, 1, y + r); break;
        case 4: rows_dot(L, i + (size_t)r, xt, 4, 1, y + r); break;
        case 5: rows_dot(L, i + (size_t)r, xt, 5, 1, y + r); break;
        case 6: rows_dot(L, i + (size_t)r, xt, 6, 1, y + r); break;
        case 7: rows_dot(L, i + (size_t)r, xt, 7, 1, y + r); break;
        default: y[r] = row_dot_any(L, i + (size_t)r, xt); break;
        }
    }
}
#undef ROWS

void pbs2p_rows_avx2(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                     float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t tstride = (size_t)L->n_xs * ((size_t)L->cols + PBS2P_XS_PAD);
    const int NR = L->planes <= 3 ? 4 : 2; /* 16 ymm registers: <= 12 plane sums */
    for (size_t t = 0; t < n_tokens; t++) {
        const float *xt = xs + t * tstride;
        size_t i = (size_t)row0;
        for (; i < (size_t)row1 && i % (size_t)NR; i++) rows_group(L, i, xt, 1, Y + t * ldy + i);
        for (; i + (size_t)NR <= (size_t)row1; i += (size_t)NR) rows_group(L, i, xt, NR, Y + t * ldy + i);
        for (; i < (size_t)row1; i++) rows_group(L, i, xt, 1, Y + t * ldy + i);
    }
}

/* GEMM, TB tokens at a time: decode 8 weights once (w = sum_p coef_p * bit_p), then one FMA per token.
 * Batch-invariant like kernel_avx512.c's. */
static inline __attribute__((always_inline)) void row_block(const struct pbs2p_layer *L, size_t i, const float *xt,
                                                           size_t tstride, float *y, size_t ldy, int TB) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, P = (size_t)L->planes, nr = pbs2p_block_rows(L, i);
    const size_t gs = (size_t)L->group_size;
    __m256 acc[8];
    for (int t = 0; t < TB; t++) acc[t] = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const uint32_t *gb = pbs2p_plane_bits(L, i, g, 0); /* plane p starts p * W * nr words later */
        const size_t pstride = (size_t)L->words * nr;
        __m256 cf[MAX_FIXED_PLANES];
        const int fixed = P <= MAX_FIXED_PLANES;
        if (fixed) for (size_t p = 0; p < P; p++) cf[p] = _mm256_set1_ps(pbs2p_plane_coef(L, i, g, p));
        for (size_t c = 0; c < len; c += 8) {
            __m256 w = _mm256_setzero_ps();
            for (size_t p = 0; p < P; p++)
                w = _mm256_add_ps(w, masked((uint8_t)pbs2p_plane_field(gb + p * pstride, nr, c, 8),
                                            fixed ? cf[p] : _mm256_set1_ps(pbs2p_plane_coef(L, i, g, p))));
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
    const size_t tstride = (size_t)L->cols + PBS2P_XS_PAD;
    for (size_t i = (size_t)row0; i < (size_t)row1; i++) {
        size_t t = 0;
        for (; t + 8 <= n_tokens; t += 8) row_block(L, i, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 8);
        for (; t + 4 <= n_tokens; t += 4) row_block(L, i, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 4);
        for (; t < n_tokens; t++) row_block(L, i, xs + t * tstride, tstride, Y + t * ldy + i, ldy, 1);
    }
}
