/* kernel_avx512.c — AVX-512 (F + BW) kernels: GEMV by 4-column lookup tables across 16 interleaved rows, GEMM by masked decode.
 *
 * GEMV (T-MAC style, float32 throughout): for every 4 columns of a scale group the 16 possible sums of x over
 * a 4-bit mask are one 512-bit table, built once per call and shared by all rows. A register holds one 32-bit
 * plane word for each of 16 rows (the prepared layout interleaves rows by 16, internal.h), and vpermps uses its
 * low 4 bits as 16 table indices at once: one shift + one permute + one add per 16 rows x 4 columns x plane,
 * versus one kmov + one masked add per row x 16 columns before (measured 0.96 -> see bench/results/kernels.md).
 *
 * Activations stay float32. Measured alternative (Xeon, 4096x4096, 2 planes, gs 128, one thread): int8
 * activations with VNNI (maskz_mov_epi8 + dpbusd per 64 columns) ran GEMV 2.3x faster than the masked-add
 * kernel but int8 rounding of x gave errors ~2.5% of mean |y|, far outside the 1e-5 kernel tolerance; not used. */
#include "internal.h"

#include <immintrin.h>
#include <stdlib.h>

#define MAX_FIXED_PLANES 7 /* S <= 3 without salient columns, S <= 2 with them: plane sums stay in registers */
#define QUADS_PER_WORD 8   /* 4-column tables per 32-bit plane word */

/* lut (n_xs, G, W * 8, 16): entry [r, g, q, m] = sum of xs[r][g*gs + 4q + b] over the bits b of m, x taken as 0
 * past the group's last column. Sums are ((x0 + x1) + x2) + x3 with absent terms skipped (adding +0 is exact). */
static void build_tables(const struct pbs2p_layer *L, const float *xt, float *lut) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, Q = (size_t)L->words * QUADS_PER_WORD;
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    static const __mmask16 has_bit[4] = {0xAAAA, 0xCCCC, 0xF0F0, 0xFF00}; /* lanes m with bit b set */
    for (size_t r = 0; r < (size_t)L->n_xs; r++)
        for (size_t g = 0; g < G; g++) {
            const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
            const float *x = xt + r * xstride + c0;
            float *t = lut + (r * G + g) * Q * 16;
            for (size_t q = 0; q < Q; q++) {
                __m512 v = _mm512_setzero_ps();
                for (size_t b = 0; b < 4 && 4 * q + b < len; b++)
                    v = _mm512_mask_add_ps(v, has_bit[b], v, _mm512_set1_ps(x[4 * q + b]));
                _mm512_store_ps(t + q * 16, v);
            }
        }
}

/* Sum over the 8 tables of one plane word: lanes = 16 rows, ((t0+t1)+(t2+t3)) + ((t4+t5)+(t6+t7)). */
static inline __m512 word_sum(__m512i w, const float *t) {
    const __m512 t0 = _mm512_permutexvar_ps(w, _mm512_load_ps(t));
    const __m512 t1 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 4), _mm512_load_ps(t + 16));
    const __m512 t2 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 8), _mm512_load_ps(t + 32));
    const __m512 t3 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 12), _mm512_load_ps(t + 48));
    const __m512 t4 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 16), _mm512_load_ps(t + 64));
    const __m512 t5 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 20), _mm512_load_ps(t + 80));
    const __m512 t6 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 24), _mm512_load_ps(t + 96));
    const __m512 t7 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 28), _mm512_load_ps(t + 112));
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t0, t1), _mm512_add_ps(t2, t3)),
                         _mm512_add_ps(_mm512_add_ps(t4, t5), _mm512_add_ps(t6, t7)));
}

/* One block of nr <= 16 rows starting at row `first`, one token: y (nr lanes). P is a compile-time constant at
 * the call sites (0 = any, read from L), so for up to 7 planes the plane sums of a scale group stay in registers. */
static inline __attribute__((always_inline)) __m512 block_dot(const struct pbs2p_layer *L, size_t first,
                                                             const float *lut, int32_t P_fixed) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words, Q = W * QUADS_PER_WORD;
    const size_t P = P_fixed ? (size_t)P_fixed : (size_t)L->planes;
    const size_t nr = pbs2p_block_rows(L, first);
    const __mmask16 lanes = (__mmask16)((1u << nr) - 1u);
    const uint32_t *bb = pbs2p_block_bits(L, first);
    const float *cb = L->coef + first * G * P;
    __m512 acc = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        if (P_fixed) { /* the planes' W words each (no word ranges) */
            __m512 s[MAX_FIXED_PLANES];
            for (size_t p = 0; p < P; p++) s[p] = _mm512_setzero_ps();
            for (size_t w = 0; w < W; w++)
                for (size_t p = 0; p < P; p++) {
                    pbs2p_stream_ahead(bb + ((g * P + p) * W + w) * nr);
                    const __m512i bits = _mm512_maskz_loadu_epi32(lanes, bb + ((g * P + p) * W + w) * nr);
                    const float *t = lut + (((size_t)L->plane_xs[p] * G + g) * Q + w * QUADS_PER_WORD) * 16;
                    s[p] = _mm512_add_ps(s[p], word_sum(bits, t));
                }
            for (size_t p = 0; p < P; p++)
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, cb + (g * P + p) * nr), s[p], acc);
        } else {
            for (size_t p = 0; p < P; p++) {
                __m512 s = _mm512_setzero_ps();
                const float *t = lut + ((size_t)L->plane_xs[p] * G + g) * Q * 16;
                size_t lo, hi;
                pbs2p_plane_words(L, g, p, &lo, &hi);
                const uint32_t *b = bb + pbs2p_plane_offset(L, g, p) * nr; /* word w at b + (w - lo) * nr */
                for (size_t w = lo; w < hi; w++, b += nr) {
                    pbs2p_stream_ahead(b);
                    s = _mm512_add_ps(s, word_sum(_mm512_maskz_loadu_epi32(lanes, b), t + w * QUADS_PER_WORD * 16));
                }
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, cb + (g * P + p) * nr), s, acc);
            }
        }
    }
    return acc;
}

/* GEMV (any token count, one token at a time): tables of the token, then 16 rows per block. A row's result
 * depends only on its own lane, so blocks cut by [row0, row1) give the same values as whole ones. */
void pbs2p_rows_avx512(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                       float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t G = (size_t)L->groups, Q = (size_t)L->words * QUADS_PER_WORD;
    const size_t lut_bytes = (size_t)L->n_xs * G * Q * 16 * sizeof(float);
    float *lut = aligned_alloc(64, lut_bytes); /* lut_bytes is a multiple of 64 */
    if (!lut) { /* out of memory for the tables: the reference kernel needs none */
        pbs2p_rows_ref(L, xs, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const size_t tstride = (size_t)L->n_xs * ((size_t)L->cols + PBS2P_XS_PAD);
    const size_t r0 = (size_t)row0, r1 = (size_t)row1;
    for (size_t t = 0; t < n_tokens; t++) {
        build_tables(L, xs + t * tstride, lut);
        for (size_t first = r0 - r0 % PBS2P_ROW_BLOCK; first < r1; first += PBS2P_ROW_BLOCK) {
            __m512 y;
            switch (L->word_lo ? 0 : L->planes) { /* planes over their own words: one plane at a time */
            case 2: y = block_dot(L, first, lut, 2); break;
            case 3: y = block_dot(L, first, lut, 3); break;
            case 4: y = block_dot(L, first, lut, 4); break;
            case 5: y = block_dot(L, first, lut, 5); break;
            case 6: y = block_dot(L, first, lut, 6); break;
            case 7: y = block_dot(L, first, lut, 7); break;
            default: y = block_dot(L, first, lut, 0); break;
            }
            const size_t lo = first < r0 ? r0 - first : 0, hi = r1 - first < PBS2P_ROW_BLOCK ? r1 - first : PBS2P_ROW_BLOCK;
            const __mmask16 keep = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
            _mm512_mask_storeu_ps(Y + t * ldy + first, keep, y);
        }
    }
    free(lut);
}

/* GEMM by outer products: the 16 lanes of a register are the 16 interleaved rows of a block, so a column's
 * weights for all 16 rows are decoded at once, w = sum_p coef_p[rows] masked by bit c of the 16 plane words, and
 * then used by one FMA per token with x[t][c] broadcast from memory: no horizontal sums, one decode per 16 rows x
 * TB tokens. Every (row, token) sum runs over the columns in order with its own accumulator lane, so a token's
 * result depends neither on TB, nor on the other tokens, nor on the block's other rows: gemm is batch-invariant. */
static inline __attribute__((always_inline)) void block_outer(const struct pbs2p_layer *L, size_t first,
                                                             const float *xt, size_t tstride, float *Y, size_t ldy,
                                                             __mmask16 store, int TB, int32_t P_fixed) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, W = (size_t)L->words, gs = (size_t)L->group_size;
    const size_t P = P_fixed ? (size_t)P_fixed : (size_t)L->planes, nr = pbs2p_block_rows(L, first);
    const __mmask16 lanes = nr == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __m512i one = _mm512_set1_epi32(1);
    __m512 acc[16];
    for (int t = 0; t < TB; t++) acc[t] = _mm512_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
        const float *gc = &L->coef[first * G * P + g * P * nr]; /* plane p: nr coefficients at + p * nr */
        __m512 coef[MAX_FIXED_PLANES];
        size_t lo[MAX_FIXED_PLANES], hi[MAX_FIXED_PLANES];
        const uint32_t *pb[MAX_FIXED_PLANES]; /* plane p's word w at pb[p] + (w - lo[p]) * nr */
        for (size_t p = 0; p < P; p++) {
            coef[p] = _mm512_maskz_loadu_ps(lanes, gc + p * nr);
            pbs2p_plane_words(L, g, p, &lo[p], &hi[p]);
            pb[p] = pbs2p_block_bits(L, first) + pbs2p_plane_offset(L, g, p) * nr;
        }
        for (size_t w = 0; w < W && 32 * w < len; w++) { /* a short last group has fewer words than W */
            __m512i bits[MAX_FIXED_PLANES];
            for (size_t p = 0; p < P; p++) /* a word outside the plane's own (internal.h) is zero */
                bits[p] = w >= lo[p] && w < hi[p] ? _mm512_maskz_loadu_epi32(lanes, pb[p] + (w - lo[p]) * nr)
                                                  : _mm512_setzero_si512();
            const size_t cols = len - 32 * w < 32 ? len - 32 * w : 32;
            const float *x = xt + c0 + 32 * w;
            for (size_t c = 0; c < cols; c++) {
                __m512 wv = _mm512_setzero_ps();
                for (size_t p = 0; p < P; p++) {
                    wv = _mm512_mask_add_ps(wv, _mm512_test_epi32_mask(bits[p], one), wv, coef[p]);
                    bits[p] = _mm512_srli_epi32(bits[p], 1);
                }
                for (int t = 0; t < TB; t++) acc[t] = _mm512_fmadd_ps(wv, _mm512_set1_ps(x[(size_t)t * tstride + c]), acc[t]);
            }
        }
    }
    for (int t = 0; t < TB; t++) _mm512_mask_storeu_ps(Y + (size_t)t * ldy, store, acc[t]);
}

/* All tokens of one block in groups of TB (16 when the decoded planes leave registers for 16 accumulators). */
static inline __attribute__((always_inline)) void block_tokens(const struct pbs2p_layer *L, size_t first,
                                                              const float *xs, size_t n_tokens, float *Y, size_t ldy,
                                                              __mmask16 store, int32_t P_fixed) {
    const size_t tstride = (size_t)L->cols + PBS2P_XS_PAD;
    size_t t = 0;
    if (P_fixed && P_fixed <= 4)
        for (; t + 16 <= n_tokens; t += 16) block_outer(L, first, xs + t * tstride, tstride, Y + t * ldy, ldy, store, 16, P_fixed);
    for (; t + 8 <= n_tokens; t += 8) block_outer(L, first, xs + t * tstride, tstride, Y + t * ldy, ldy, store, 8, P_fixed);
    for (; t + 4 <= n_tokens; t += 4) block_outer(L, first, xs + t * tstride, tstride, Y + t * ldy, ldy, store, 4, P_fixed);
    for (; t < n_tokens; t++) block_outer(L, first, xs + t * tstride, tstride, Y + t * ldy, ldy, store, 1, P_fixed);
}

void pbs2p_gemm_rows_avx512(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                            float *Y, size_t ldy, int32_t row0, int32_t row1) {
    if (L->n_xs != 1 || L->planes > MAX_FIXED_PLANES) { /* per-region scaled activations: token by token */
        pbs2p_rows_avx512(L, xs, n_tokens, Y, ldy, row0, row1);
        return;
    }
    for (size_t first = (size_t)row0 - (size_t)row0 % PBS2P_ROW_BLOCK; first < (size_t)row1; first += PBS2P_ROW_BLOCK) {
        /* lanes of rows in [row0, row1) only: a block cut by the caller's range is computed whole, stored in part */
        uint32_t store = 0;
        for (size_t i = first; i < first + PBS2P_ROW_BLOCK && i < (size_t)row1; i++)
            if (i >= (size_t)row0) store |= 1u << (i - first);
        float *y = Y + first;
        switch (L->planes) { /* P as a constant: the plane loops unroll and their registers stay allocated */
        case 1: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 1); break;
        case 2: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 2); break;
        case 3: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 3); break;
        case 4: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 4); break;
        case 5: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 5); break;
        case 6: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 6); break;
        default: block_tokens(L, first, xs, n_tokens, y, ldy, (__mmask16)store, 7); break;
        }
    }
}
