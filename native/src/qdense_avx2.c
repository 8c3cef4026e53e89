/* qdense_avx2.c — AVX2 integer dense products (internal.h: "integer dense products"): the codes of eight activation
 * blocks against eight blocks of int8 activations with maddubs, their eight integer dots reduced side by side into
 * one vector (lane k = block 8g + k: the reference's acc[b % 8]), scaled and summed as float32 vectors; a last group of
 * fewer than eight blocks leaves its other lanes +0, which adds nothing. The codes of a row's eight blocks are
 * unpacked once and reused by up to TOKENS tokens. Each type gets its own loops (always-inlined with a constant
 * type). Built with -ffp-contract=off. */
#include "internal.h"
#include "dense_codes_x86.h"

#include <immintrin.h>
#include <string.h>

#define TOKENS 8 /* tokens per pass over a row: the codes of eight blocks are unpacked once for them */
#define INLINE static inline __attribute__((always_inline))

static inline uint16_t half_bits(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Byte offset in its row of the weight block holding activation block b. */
INLINE size_t block_at(int32_t type, int32_t b) {
    switch (type) {
    case PBS2P_GGML_Q8_0: return (size_t)b * PBS2P_Q8_0_BYTES;
    case PBS2P_GGML_Q4_0: return (size_t)b * PBS2P_Q4_0_BYTES;
    default: return pbs2p_our_block_at(type, (size_t)(b / 2)); /* ours: half b % 2 of weight block b / 2 */
    }
}

/* The 32 weight codes of activation block b of a row, one byte each (Q8_0 signed, the others unsigned). Our blocks
 * of 64 (FORMAT.md §10): code 16s + i has its low bits at bits 2s of qs[i] and its high bit (q3) at bit 16s + i of
 * the 64-bit qh; block b is half h = b % 2 of its weight block, codes 32h .. 32h + 31 = s = 2h (low 128 bits) and
 * s = 2h + 1 (high). */
INLINE __m256i codes32(int32_t type, const uint8_t *row, int32_t b) {
    if (type == PBS2P_GGML_Q8_0) return _mm256_loadu_si256((const __m256i *)(row + (size_t)b * PBS2P_Q8_0_BYTES + 2));
    if (type == PBS2P_GGML_Q4_0) {
        const uint8_t *qs = row + (size_t)b * PBS2P_Q4_0_BYTES + 2;
        return _mm256_set_m128i(q4_0_codes(qs, 1), q4_0_codes(qs, 0));
    }
    const int q3 = type == PBS2P_DENSE_Q3_G64 || type == PBS2P_DENSE_Q3_S16, h = b % 2;
    const uint8_t *p = row + block_at(type, b);
    if (type == PBS2P_DENSE_Q4_S16) { /* half h: one Q4_0 block's codes */
        const uint8_t *qs = p + 4 + 16 * h;
        return _mm256_set_m128i(q4_0_codes(qs, 1), q4_0_codes(qs, 0));
    }
    const __m256i qs = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + 4)));
    __m256i q = _mm256_and_si256(_mm256_srlv_epi32(qs, _mm256_setr_epi32(4 * h, 4 * h, 4 * h, 4 * h, 4 * h + 2, 4 * h + 2,
                                                                          4 * h + 2, 4 * h + 2)),
                                 _mm256_set1_epi8(3)); /* 32-bit shifts: the mask drops what crosses into a byte */
    if (q3) { /* the 32 high bits of this half, bit i to byte i, as 4 */
        uint32_t bits;
        memcpy(&bits, p + 20 + 4 * h, 4);
        const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                                   _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(4)));
    }
    return q;
}

/* Eight int32 partial sums of Q8_0 codes . x: the signed codes go through maddubs as |w| and x with w's sign;
 * products and pair sums fit int16 (at most 2 * 128 * 127), their sums need int32. */
INLINE __m256i q8_dot32(__m256i w, const int8_t *x) {
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w)), _mm256_set1_epi16(1));
}

/* Lane k = the total of v[k]: integer sums, exact in any order. */
INLINE __m256i hsum8(const __m256i v[8]) {
    const __m256i t0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i t1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20), _mm256_permute2x128_si256(t0, t1, 0x31));
}

/* int16 k of 128-bit half i = the total of the 8 int16 of half i of v[k] (each within int16). */
INLINE __m256i halves8_16(const __m256i v[8]) {
    const __m256i h0 = _mm256_hadd_epi16(_mm256_hadd_epi16(v[0], v[1]), _mm256_hadd_epi16(v[2], v[3]));
    const __m256i h1 = _mm256_hadd_epi16(_mm256_hadd_epi16(v[4], v[5]), _mm256_hadd_epi16(v[6], v[7]));
    return _mm256_hadd_epi16(h0, h1);
}

/* Lane k = the total of the 16 int16 of v[k] (each total within int16 in each 128-bit half). */
INLINE __m256i hsum8_16(const __m256i v[8]) {
    const __m256i h = halves8_16(v);
    return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(h)),
                            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(h, 1)));
}

/* Our two-level blocks: the sub-block codes of activation blocks b0 .. b0 + n - 1 (weight blocks b0 / 2 on; b0 and n
 * even, as a row holds whole blocks of 64), lane k: sc[2h], sc[2h + 1] of block b0 + k = 2 w + h, which are bytes
 * 2k, 2k + 1 of the four weight blocks' sc[4] one after another; 0 beyond n. */
INLINE __m128i sub_codes8(int32_t type, const uint8_t *row, int32_t b0, int n) {
    int32_t w[4] = {0, 0, 0, 0};
    for (int k = 0; 2 * k < n; k++) memcpy(&w[k], row + block_at(type, b0 + 2 * k), 4);
    return _mm_setr_epi32(w[0], w[1], w[2], w[3]);
}

/* The scales (off 0) or mins (off 2) of activation blocks b0 .. b0 + n - 1 as float32, +0 in lanes n..7 (one 16-bit
 * insert each: eight narrow stores and one wide load would stall on store forwarding). */
INLINE __m256 halves8(int32_t type, const uint8_t *row, int32_t b0, int n, int off) {
    __m128i h = _mm_setzero_si128();
#define PUT(k) if (n > (k)) h = _mm_insert_epi16(h, half_bits(row + block_at(type, b0 + (k)) + off), (k))
    PUT(0); PUT(1); PUT(2); PUT(3); PUT(4); PUT(5); PUT(6); PUT(7);
#undef PUT
    return _mm256_cvtph_ps(h);
}

/* The activation side of a group: lanes 0..n-1 of its scales, code sums, scale * sums and (our two-level blocks) scale
 * * the sums of each half; 0 beyond. */
typedef struct group_x {
    const int8_t *q;
    __m256 d, s, sl, sh;
    __m256i sum;
} group_x;

INLINE group_x group_acts(int32_t type, const pbs2p_q8_acts *A, size_t t, int32_t b0, int n) {
    const size_t tb = t * (size_t)A->blocks + (size_t)b0;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const int s16 = pbs2p_dense_s16(type);
    group_x g = {A->q + t * (size_t)A->cols + 32 * (size_t)b0, _mm256_maskload_ps(A->d + tb, mask),
                 _mm256_maskload_ps(A->s + tb, mask), s16 ? _mm256_maskload_ps(A->sl + tb, mask) : _mm256_setzero_ps(),
                 s16 ? _mm256_maskload_ps(A->sh + tb, mask) : _mm256_setzero_ps(), _mm256_maskload_epi32(A->sum + tb, mask)};
    return g;
}

/* Our two-level blocks: the sub-block codes of a group of eight activation blocks (sub_codes8, 16 bits a lane). */
typedef struct group_sub {
    __m256i sc;       /* lane k: sc0 | sc1 << 16, the scale codes of block b0 + k's two halves */
    __m256 mc0, mc1;  /* their min codes as floats */
} group_sub;

INLINE group_sub unpack_sub(__m256i sub) {
    const __m256i nib = _mm256_set1_epi32(15);
    return (group_sub){_mm256_or_si256(_mm256_and_si256(sub, nib), _mm256_slli_epi32(_mm256_and_si256(sub, _mm256_set1_epi32(0xF00)), 8)),
                       _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(sub, 4), nib)),
                       _mm256_cvtepi32_ps(_mm256_srli_epi32(sub, 12))};
}

/* qdense_ref.c's s16_row for blocks b0 .. b0 + n - 1 of one row and one token: lane k's I0, I1 as a pair of int16
 * (each within int16), madd with (sc0, sc1) gives T; T into *accT, the min term into *accZ. */
INLINE void group_s16(const __m256i w[8], int n, const group_sub *g, const group_x *x, __m256 *accT, __m256 *accZ) {
    __m256i p[8];
    for (int k = 0; k < 8; k++)
        p[k] = k < n ? _mm256_maddubs_epi16(w[k], _mm256_loadu_si256((const __m256i *)(x->q + 32 * k)))
                     : _mm256_setzero_si256();
    /* 128-bit half 0: I0 of blocks 0..7, half 1: their I1; into lanes (I0, I1) of blocks 0..3 | 4..7 */
    const __m256i h = _mm256_permute4x64_epi64(halves8_16(p), 0xD8);
    const __m256i T = _mm256_madd_epi16(_mm256_unpacklo_epi16(h, _mm256_srli_si256(h, 8)), g->sc);
    *accT = _mm256_fmadd_ps(x->d, _mm256_cvtepi32_ps(T), *accT);
    *accZ = _mm256_fmadd_ps(g->mc1, x->sh, _mm256_fmadd_ps(g->mc0, x->sl, *accZ));
}

/* The terms of blocks b0 .. b0 + n - 1 of one row (codes w, scales dw, mins mw) and one token's activations; not our
 * two-level blocks (group_s16). */
INLINE __m256 group_terms(int32_t type, const __m256i w[8], int n, __m256 dw, __m256 mw, const group_x *x) {
    __m256i I;
    if (type == PBS2P_GGML_Q8_0) {
        __m256i p[8];
        for (int k = 0; k < 8; k++) p[k] = k < n ? q8_dot32(w[k], x->q + 32 * k) : _mm256_setzero_si256();
        I = hsum8(p);
    } else { /* codes <= 15: a pair of products is at most 3810 in magnitude, and eight pairs 30480, so the int16
              * sums of maddubs add up in int16 before widening */
        __m256i p[8];
        for (int k = 0; k < 8; k++)
            p[k] = k < n ? _mm256_maddubs_epi16(w[k], _mm256_loadu_si256((const __m256i *)(x->q + 32 * k)))
                         : _mm256_setzero_si256();
        I = hsum8_16(p);
    }
    if (type == PBS2P_GGML_Q4_0) I = _mm256_sub_epi32(I, _mm256_slli_epi32(x->sum, 3)); /* codes - 8 */
    __m256 term = _mm256_mul_ps(_mm256_mul_ps(dw, x->d), _mm256_cvtepi32_ps(I));
    if (type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64) term = _mm256_add_ps(term, _mm256_mul_ps(mw, x->s));
    return term;
}

INLINE float total8(__m256 v) {
    float a[8];
    _mm256_storeu_ps(a, v);
    return pbs2p_total8(a);
}

/* y[t * ldy] for tokens t0 .. t0 + NT - 1 and one row: its groups of eight blocks, then the last nb % 8. */
INLINE void row_tokens(int32_t type, const uint8_t *row, const pbs2p_q8_acts *A, size_t t0, int NT, float *y, size_t ldy) {
    const int mins = type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64, s16 = pbs2p_dense_s16(type);
    __m256 acc[TOKENS], accZ[TOKENS];
    for (int t = 0; t < NT; t++) acc[t] = accZ[t] = _mm256_setzero_ps();
    for (int32_t b0 = 0; b0 < A->blocks; b0 += 8) {
        const int n = A->blocks - b0 < 8 ? A->blocks - b0 : 8;
        __m256i w[8];
        for (int k = 0; k < 8; k++) w[k] = k < n ? codes32(type, row, b0 + k) : _mm256_setzero_si256();
        if (s16) {
            const group_sub g = unpack_sub(_mm256_cvtepu16_epi32(sub_codes8(type, row, b0, n)));
            for (int t = 0; t < NT; t++) {
                const group_x x = group_acts(type, A, t0 + (size_t)t, b0, n);
                if (n == 8) group_s16(w, 8, &g, &x, &acc[t], &accZ[t]); /* n a constant: its lane checks vanish */
                else group_s16(w, n, &g, &x, &acc[t], &accZ[t]);
            }
            continue;
        }
        const __m256 dw = halves8(type, row, b0, n, 0), mw = mins ? halves8(type, row, b0, n, 2) : dw;
        for (int t = 0; t < NT; t++) {
            const group_x x = group_acts(type, A, t0 + (size_t)t, b0, n);
            /* n a constant 8 in the full groups' copy of group_terms, so its lane checks vanish */
            acc[t] = _mm256_add_ps(acc[t], n == 8 ? group_terms(type, w, 8, dw, mw, &x) : group_terms(type, w, n, dw, mw, &x));
        }
    }
    for (int t = 0; t < NT; t++)
        y[(size_t)t * ldy] = s16 ? (_cvtsh_ss(half_bits(row)) * total8(acc[t])) - (_cvtsh_ss(half_bits(row + 2)) * total8(accZ[t]))
                                 : total8(acc[t]);
}

INLINE void rows_of(int32_t type, const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                    int32_t row0, int32_t row1) {
    for (int32_t r = row0; r < row1; r++) {
        const uint8_t *row = W->data + (size_t)r * W->row_bytes;
        size_t t = 0;
        for (; t + TOKENS <= n_tokens; t += TOKENS) row_tokens(type, row, A, t, TOKENS, Y + t * ldy + (size_t)r, ldy);
        if (n_tokens - t == 1) row_tokens(type, row, A, t, 1, Y + t * ldy + (size_t)r, ldy); /* decoding */
        else if (t < n_tokens) row_tokens(type, row, A, t, (int)(n_tokens - t), Y + t * ldy + (size_t)r, ldy);
    }
}

void pbs2p_qdense_rows_avx2(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                            int32_t row0, int32_t row1) {
    if (n_tokens >= AVX2_LANES_MIN_TOKENS) { /* a prompt: rows as lanes (qdense_lanes_avx2.c), the same bits */
        pbs2p_qdense_lanes_avx2(W, A, n_tokens, Y, ldy, row0, row1);
        return;
    }
    switch (W->type) {
    case PBS2P_GGML_Q8_0: rows_of(PBS2P_GGML_Q8_0, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_GGML_Q4_0: rows_of(PBS2P_GGML_Q4_0, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q3_G64: rows_of(PBS2P_DENSE_Q3_G64, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q2_S16: rows_of(PBS2P_DENSE_Q2_S16, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q3_S16: rows_of(PBS2P_DENSE_Q3_S16, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q4_S16: rows_of(PBS2P_DENSE_Q4_S16, W, A, n_tokens, Y, ldy, row0, row1); break;
    default: rows_of(PBS2P_DENSE_Q2_G64, W, A, n_tokens, Y, ldy, row0, row1);
    }
}
