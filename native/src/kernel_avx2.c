/* kernel_avx2.c — AVX2 + FMA kernels: GEMV by 3-column lookup tables across 16 interleaved rows, GEMM by masked decode.
 *
 * GEMV (float32 throughout, like kernel_avx512.c but within AVX2's 8-entry permute): every 32-bit plane word is
 * cut into 10 three-column fields (bits 0..29) and one two-column field (bits 30, 31). For each field the 8 sums
 * of x over a 3-bit mask are one 256-bit table, built once per call and shared by all rows. The 16 interleaved
 * rows of a block (internal.h) are two registers of 8 plane words; vpermps reads only the low 3 bits of each
 * index, so one shift + one permute + one add looks up 8 rows x 3 columns. Chosen over 4-column tables (two
 * permutes + a blend per 8 rows x 4 columns): 11 permutes per word instead of 16, and fewer shift/add uops.
 * The loop is bound by those ~64 vector uops per 16 rows x 32 columns x plane, not by memory: 4096x4096 4:8,
 * one thread, Xeon: 2.20 ms with the previous masked-add kernel -> 0.42 ms (AVX-512: 0.29 ms).
 *
 * The int8 products read the same tables built from the codes; a kept_signs layer (internal.h: plane 1 held as the
 * file's kept-order signs, 1.5 bits a weight for the planes' 2) has its +1 words rebuilt by pdep a few words ahead
 * (kept_signs_x86.h) where the CPU runs pdep fast (dispatch.c): 306 MB held instead of 407 for 8 Llama-2-7B-shape
 * blocks of compact 4:8, in the same time. A decode pass over those linears, AVX2 forced on the Xeon of
 * bench/results/kernels.md, planes -> signs, medians of 5 alternating runs of pbs2p-bench-linears: one thread
 * 66.8 -> 65.8 ms, two threads 34.3 -> 33.4 ms (a first version kept the ring's sizes in the struct its slots are
 * stored into, so every word reloaded them: 15-20 % slower). Without the ring (each word rebuilt where it is used)
 * two threads took 52 ms.
 *
 * GEMM keeps the decode-then-FMA scheme: w = sum_p coef_p * bit_p for 8 columns, reused by up to 8 tokens. */
#include "internal.h"
#include "kept_signs_x86.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* lane_masks[b][l] = all ones when bit l of b is set: 256 x 32 bytes of constants (no start-up code). */
#define E1(b) { -((b) & 1), -((b) >> 1 & 1), -((b) >> 2 & 1), -((b) >> 3 & 1), \
                -((b) >> 4 & 1), -((b) >> 5 & 1), -((b) >> 6 & 1), -((b) >> 7 & 1) }
#define E4(b) E1(b), E1((b) + 1), E1((b) + 2), E1((b) + 3)
#define E16(b) E4(b), E4((b) + 4), E4((b) + 8), E4((b) + 12)
#define E64(b) E16(b), E16((b) + 16), E16((b) + 32), E16((b) + 48)
static const int32_t lane_masks[256][8] __attribute__((aligned(32))) = { E64(0), E64(64), E64(128), E64(192) };

#define MAX_FIXED_PLANES 7
#define FIELDS_PER_WORD 11 /* 3-column fields at bits 0, 3, ..., 27, then the 2-column field at bit 30 */
#define WORD_TABLE (FIELDS_PER_WORD * 8) /* floats of the tables of one plane word */

static inline __m256 masked(uint8_t bits8, __m256 x) {
    return _mm256_and_ps(_mm256_load_ps((const float *)lane_masks[bits8]), x);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* lut (n_xs, G, W, 11, 8): entry [r, g, w, f, m] = sum of xs[r][g*gs + 32w + 3f + b] over the bits b of m
 * (b < 3, or b < 2 for f = 10, whose entries 4..7 repeat 0..3 and are never indexed), x taken as 0 past the
 * group's last column. Sums are (x0 + x1) + x2 with absent terms adding +0 (exact). Words past
 * pbs2p_group_words() are not written and never read. */
static void build_tables(const struct pbs2p_layer *L, const float *xt, float *lut) {
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, W = (size_t)L->words;
    const size_t gs = (size_t)L->group_size, xstride = K + PBS2P_XS_PAD;
    const __m256 bit0 = _mm256_load_ps((const float *)lane_masks[0xAA]); /* lanes m with bit 0 of m set */
    const __m256 bit1 = _mm256_load_ps((const float *)lane_masks[0xCC]);
    const __m256 bit2 = _mm256_load_ps((const float *)lane_masks[0xF0]);
    for (size_t r = 0; r < (size_t)L->n_xs; r++)
        for (size_t g = 0; g < G; g++) {
            const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
            const float *x = xt + r * xstride + c0;
            for (size_t w = 0; w < pbs2p_group_words(L, g); w++) {
                float *t = lut + ((r * G + g) * W + w) * WORD_TABLE;
                float xw[32];
                for (size_t c = 0; c < 32; c++) xw[c] = 32 * w + c < len ? x[32 * w + c] : 0.0f;
                for (size_t f = 0; f < 10; f++) {
                    __m256 v = _mm256_and_ps(_mm256_set1_ps(xw[3 * f]), bit0);
                    v = _mm256_add_ps(v, _mm256_and_ps(_mm256_set1_ps(xw[3 * f + 1]), bit1));
                    v = _mm256_add_ps(v, _mm256_and_ps(_mm256_set1_ps(xw[3 * f + 2]), bit2));
                    _mm256_store_ps(t + 8 * f, v);
                }
                __m256 v = _mm256_and_ps(_mm256_set1_ps(xw[30]), bit0);
                v = _mm256_add_ps(v, _mm256_and_ps(_mm256_set1_ps(xw[31]), bit1));
                _mm256_store_ps(t + 80, v);
            }
        }
}

/* Sum over the 11 tables `t` of one plane word w: lanes = 8 rows, ((f0+f1)+(f2+f3)) + ((f4+f5)+(f6+f7)) +
 * ((f8+f9)+f10). Each half of a block calls it with the same tables (reloaded from L1: keeping
 * both halves' 22 lookups live spilled registers and ran 11% slower). */
#define LOOK(f, shift) _mm256_permutevar8x32_ps(_mm256_load_ps(t + 8 * (f)), _mm256_srli_epi32(w, shift))
static inline __attribute__((always_inline)) __m256 word_sum(__m256i w, const float *t) {
    const __m256 q0 = _mm256_add_ps(_mm256_add_ps(LOOK(0, 0), LOOK(1, 3)), _mm256_add_ps(LOOK(2, 6), LOOK(3, 9)));
    const __m256 q1 = _mm256_add_ps(_mm256_add_ps(LOOK(4, 12), LOOK(5, 15)), _mm256_add_ps(LOOK(6, 18), LOOK(7, 21)));
    const __m256 q2 = _mm256_add_ps(_mm256_add_ps(LOOK(8, 24), LOOK(9, 27)), LOOK(10, 30));
    return _mm256_add_ps(_mm256_add_ps(q0, q1), q2);
}
#undef LOOK

/* The lanes of a row block's rows 8 h .. 8 h + 7 that exist (nr rows): the first min(nr, 8) for h = 0,
 * max(nr - 8, 0) for h = 1, as a maskload mask. */
static inline __m256i row_lanes(size_t nr, int h) {
    static const int32_t ones_then_zeros[24] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    const size_t n = h ? (nr > 8 ? nr - 8 : 0) : (nr < 8 ? nr : 8);
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 16 - n));
}

/* One block of nr <= 16 rows starting at row `first`, one token: y[0..16) (lanes past nr are 0). FULL: nr == 16
 * (plain loads); otherwise masked loads of the nr rows. A row's operations depend only on its own lane. d: NULL for
 * tables of float activations (a plane's word sums added up), else the tables hold int8 codes and d the scales of
 * their blocks (n_xs, G, W): each word's exact integer sum is scaled into the plane's sum, s = fma(sum, d, s). */
static inline __attribute__((always_inline)) void block_dot(const struct pbs2p_layer *L, size_t first,
                                                           const float *lut, const float *d, int FULL, float *y) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words, P = (size_t)L->planes;
    const size_t nr = pbs2p_block_rows(L, first);
    const __m256i ma = row_lanes(nr, 0), mb = row_lanes(nr, 1);
    const uint32_t *bb = pbs2p_block_bits(L, first);
    const float *cb = L->coef + first * G * P;
    __m256 acca = _mm256_setzero_ps(), accb = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        for (size_t p = 0; p < P; p++) {
            const float *t = lut + ((size_t)L->plane_xs[p] * G + g) * W * WORD_TABLE;
            size_t lo, hi;
            pbs2p_plane_words(L, g, p, &lo, &hi);
            const uint32_t *b = bb + pbs2p_plane_offset(L, g, p) * nr; /* word w at b + (w - lo) * nr */
            __m256 sa = _mm256_setzero_ps(), sb = _mm256_setzero_ps();
            for (size_t w = lo; w < hi; w++, b += nr) {
                pbs2p_stream_ahead(b);
                const __m256i wa = FULL ? _mm256_loadu_si256((const __m256i *)b)
                                        : _mm256_maskload_epi32((const int *)b, ma);
                const __m256i wb = FULL ? _mm256_loadu_si256((const __m256i *)(b + 8))
                                        : _mm256_maskload_epi32((const int *)(b + 8), mb);
                if (d) {
                    const __m256 dw = _mm256_set1_ps(d[((size_t)L->plane_xs[p] * G + g) * W + w]);
                    sa = _mm256_fmadd_ps(word_sum(wa, t + w * WORD_TABLE), dw, sa);
                    sb = _mm256_fmadd_ps(word_sum(wb, t + w * WORD_TABLE), dw, sb);
                } else {
                    sa = _mm256_add_ps(sa, word_sum(wa, t + w * WORD_TABLE));
                    sb = _mm256_add_ps(sb, word_sum(wb, t + w * WORD_TABLE));
                }
            }
            const float *c = cb + (g * P + p) * nr;
            acca = _mm256_fmadd_ps(FULL ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, ma), sa, acca);
            accb = _mm256_fmadd_ps(FULL ? _mm256_loadu_ps(c + 8) : _mm256_maskload_ps(c + 8, mb), sb, accb);
        }
    }
    _mm256_storeu_ps(y, acca);
    _mm256_storeu_ps(y + 8, accb);
}

/* Row block `first` of a kept_signs layer (internal.h), one token of codes: block_dot's operations for its two planes
 * with d (the same bits), plane 1's words rebuilt from the ring (kept_signs_x86.h) instead of loaded. */
static inline __attribute__((always_inline)) PBS2P_BMI2 void block_dot_signs(const struct pbs2p_layer *L,
                                                                            size_t first, const float *lut,
                                                                            const float *d, int FULL, float *y) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words, nr = pbs2p_block_rows(L, first);
    const __m256i ma = row_lanes(nr, 0), mb = row_lanes(nr, 1);
    const float *cb = L->coef + first * G * 2;
    const signs_ring ring = signs_ring_at(L, first);
    uint64_t slot[SIGNS_RING][8] __attribute__((aligned(64)));
    ring_start(&ring, slot);
    __m256 acca = _mm256_setzero_ps(), accb = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        __m256 s0a = _mm256_setzero_ps(), s0b = _mm256_setzero_ps(), s1a = _mm256_setzero_ps();
        __m256 s1b = _mm256_setzero_ps();
        for (size_t w = 0, gw = pbs2p_group_words(L, g); w < gw; w++) {
            const size_t blk = g * W + w; /* plane 0's word, the signs' word and the activation block */
            const uint64_t *plus = ring_step(&ring, slot, blk);
            const uint32_t *b = ring.kept + blk * nr;
            pbs2p_stream_ahead(b);
            const __m256i wa = FULL ? _mm256_loadu_si256((const __m256i *)b)
                                    : _mm256_maskload_epi32((const int *)b, ma);
            const __m256i wb = FULL ? _mm256_loadu_si256((const __m256i *)(b + 8))
                                    : _mm256_maskload_epi32((const int *)(b + 8), mb);
            const float *t = lut + blk * WORD_TABLE;
            const __m256 dw = _mm256_set1_ps(d[blk]);
            s0a = _mm256_fmadd_ps(word_sum(wa, t), dw, s0a);
            s0b = _mm256_fmadd_ps(word_sum(wb, t), dw, s0b);
            s1a = _mm256_fmadd_ps(word_sum(_mm256_load_si256((const __m256i *)plus), t), dw, s1a);
            s1b = _mm256_fmadd_ps(word_sum(_mm256_load_si256((const __m256i *)(plus + 4)), t), dw, s1b);
        }
        for (size_t p = 0; p < 2; p++) {
            const float *c = cb + (g * 2 + p) * nr;
            acca = _mm256_fmadd_ps(FULL ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, ma), p ? s1a : s0a, acca);
            accb = _mm256_fmadd_ps(FULL ? _mm256_loadu_ps(c + 8) : _mm256_maskload_ps(c + 8, mb), p ? s1b : s0b, accb);
        }
    }
    _mm256_storeu_ps(y, acca);
    _mm256_storeu_ps(y + 8, accb);
}

static __attribute__((noinline)) PBS2P_BMI2 void block_signs(const struct pbs2p_layer *L, size_t first,
                                                             const float *lut, const float *d, float *y) {
    if (pbs2p_block_rows(L, first) == PBS2P_ROW_BLOCK) block_dot_signs(L, first, lut, d, 1, y);
    else block_dot_signs(L, first, lut, d, 0, y);
}

/* GEMV (any token count, one token at a time): tables of the token, then 16 rows per block. Blocks cut by
 * [row0, row1) give the same values as whole ones (lanes are independent). */
void pbs2p_rows_avx2(const struct pbs2p_layer *L, const float *xs, size_t n_tokens,
                     float *Y, size_t ldy, int32_t row0, int32_t row1) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words;
    float *lut = aligned_alloc(32, (size_t)L->n_xs * G * W * WORD_TABLE * sizeof(float)); /* a multiple of 32 bytes */
    if (!lut) { /* out of memory for the tables: the reference kernel needs none */
        pbs2p_rows_ref(L, xs, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const size_t tstride = (size_t)L->n_xs * ((size_t)L->cols + PBS2P_XS_PAD);
    const size_t r0 = (size_t)row0, r1 = (size_t)row1;
    for (size_t t = 0; t < n_tokens; t++) {
        build_tables(L, xs + t * tstride, lut);
        for (size_t first = r0 - r0 % PBS2P_ROW_BLOCK; first < r1; first += PBS2P_ROW_BLOCK) {
            float y[PBS2P_ROW_BLOCK];
            if (pbs2p_block_rows(L, first) == PBS2P_ROW_BLOCK) block_dot(L, first, lut, NULL, 1, y);
            else block_dot(L, first, lut, NULL, 0, y);
            const size_t lo = first < r0 ? r0 - first : 0, hi = r1 - first < PBS2P_ROW_BLOCK ? r1 - first : PBS2P_ROW_BLOCK;
            memcpy(Y + t * ldy + first + lo, y + lo, (hi - lo) * sizeof *y);
        }
    }
    free(lut);
}

/* The products on int8 activations (internal.h) from the same tables, built from the codes: small integers, so every
 * table entry and word sum is exact, and block_dot scales each word's sum by its block's d. */
void pbs2p_rows_q8_avx2(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                        int32_t row0, int32_t row1) {
    if (n_tokens >= AVX2_Q8_TOKENS_MIN) {
        pbs2p_rows_q8_tokens_avx2(L, A, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const size_t K = (size_t)L->cols, G = (size_t)L->groups, W = (size_t)L->words, gs = (size_t)L->group_size;
    const size_t xstride = K + PBS2P_XS_PAD;
    float *lut = aligned_alloc(32, (size_t)L->n_xs * G * W * WORD_TABLE * sizeof(float)); /* a multiple of 32 bytes */
    float *codes = calloc((size_t)L->n_xs * xstride, sizeof *codes); /* one token's codes where its x would be */
    if (!lut || !codes) { /* out of memory for the tables: the reference needs none */
        free(lut);
        free(codes);
        pbs2p_rows_q8_ref(L, A, n_tokens, Y, ldy, row0, row1);
        return;
    }
    const size_t r0 = (size_t)row0, r1 = (size_t)row1;
    for (size_t t = 0; t < n_tokens; t++) {
        const pbs2p_q8_acts At = pbs2p_q8_acts_at(A, t);
        for (size_t r = 0; r < (size_t)L->n_xs; r++)
            for (size_t g = 0; g < G; g++) {
                const size_t c0 = g * gs, len = K - c0 < gs ? K - c0 : gs;
                const int8_t *q = At.q + (r * G + g) * W * PBS2P_ACT_BLOCK; /* the group's blocks, contiguous */
                for (size_t c = 0; c < len; c++) codes[r * xstride + c0 + c] = (float)q[c];
            }
        build_tables(L, codes, lut);
        for (size_t first = r0 - r0 % PBS2P_ROW_BLOCK; first < r1; first += PBS2P_ROW_BLOCK) {
            float y[PBS2P_ROW_BLOCK];
            if (L->kept_signs) block_signs(L, first, lut, At.d, y);
            else if (pbs2p_block_rows(L, first) == PBS2P_ROW_BLOCK) block_dot(L, first, lut, At.d, 1, y);
            else block_dot(L, first, lut, At.d, 0, y);
            const size_t lo = first < r0 ? r0 - first : 0, hi = r1 - first < PBS2P_ROW_BLOCK ? r1 - first : PBS2P_ROW_BLOCK;
            memcpy(Y + t * ldy + first + lo, y + lo, (hi - lo) * sizeof *y);
        }
    }
    free(codes);
    free(lut);
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
    if (L->n_xs != 1 || L->word_lo) { /* per-region scaled activations, planes over their own words: token by token */
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
