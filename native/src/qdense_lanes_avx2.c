/* qdense_lanes_avx2.c — AVX2 integer dense products for several tokens (a prompt), rows as lanes: qdense_avx512.c's
 * scheme without VNNI (internal.h: "integer dense products"). For one activation block, vector j holds weight codes
 * 4j .. 4j + 3 of each of eight rows (gathered, one 32-bit load a row); maddubs against the token's codes 4j .. 4j + 3
 * (broadcast) and madd with ones leave each row's exact integer dot I_b in its own lane, with no horizontal sums.
 * The codes of a block are gathered once for up to TOKENS tokens; each token keeps the reference's eight sums
 * acc[b % 8] per row (our two-level blocks also accZ, as qdense_ref.c's s16_row), so every output has the
 * reference's bits. Built with -ffp-contract=off.
 *
 * maddubs multiplies unsigned by signed bytes and adds pairs with int16 saturation. Q4_0 and our blocks have codes
 * <= 15: a pair is at most 3810 in magnitude and the eight vectors' pairs add up in int16 (30480) before widening.
 * Q8_0's signed codes go in as |w| against x with w's sign (a pair at most 32512), widened one vector at a time. */
#include "internal.h"

#include <immintrin.h>

#define ROWS 8
#define TOKENS 16
#define INLINE static inline __attribute__((always_inline))

typedef struct block_codes {
    __m256i w[8];  /* unsigned codes (Q8_0: |w|) */
    __m256i sg[8]; /* Q8_0: the codes themselves, for their signs */
    __m256 dw, mw;
    __m256i sc0, sc1; /* our two-level blocks: the scale codes sc[2h], sc[2h + 1] in both 16-bit halves of a lane */
    __m256 mc0, mc1;  /* and the min codes mc[2h], mc[2h + 1] as floats */
} block_codes;

INLINE __m256i gather(__m256i rows, __m256i at, const uint8_t *base) {
    return _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)base, at, rows, 1);
}

/* The float16 in the low (high = 0) or high (1) half of each 32-bit lane, as float32. */
INLINE __m256 half_lanes(__m256i v, int high) {
    const __m256i h = high ? _mm256_srli_epi32(v, 16) : _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
    return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
}

/* Activation block b of the rows at `rows` (row k at base + at[k], lanes with the sign bit set in `rows`). */
INLINE block_codes gather_block(int32_t type, const uint8_t *base, __m256i at, __m256i rows, int32_t b) {
    block_codes c;
    const __m256i low2 = _mm256_set1_epi8(3), nibble = _mm256_set1_epi8(15);
    if (type == PBS2P_GGML_Q8_0) {
        const uint8_t *p = base + (size_t)b * PBS2P_Q8_0_BYTES;
        for (int j = 0; j < 8; j++) {
            c.sg[j] = gather(rows, at, p + 2 + 4 * j);
            c.w[j] = _mm256_abs_epi8(c.sg[j]);
        }
        c.dw = c.mw = half_lanes(gather(rows, at, p), 0);
        return c;
    }
    if (type == PBS2P_GGML_Q4_0) { /* codes 4j.. of the low nibbles (j < 4), then of the high nibbles */
        const uint8_t *p = base + (size_t)b * PBS2P_Q4_0_BYTES;
        for (int j = 0; j < 4; j++) {
            const __m256i qs = gather(rows, at, p + 2 + 4 * j);
            c.w[j] = _mm256_and_si256(qs, nibble);
            c.w[j + 4] = _mm256_and_si256(_mm256_srli_epi32(qs, 4), nibble); /* the mask drops what crosses a byte */
        }
        c.dw = c.mw = half_lanes(gather(rows, at, p), 0);
        return c;
    }
    /* our blocks of 64 (as qdense_avx512.c): activation block b is half h of weight block b / 2; the two-level ones
     * after the row's header */
    const int q3 = type == PBS2P_DENSE_Q3_G64 || type == PBS2P_DENSE_Q3_S16, h = b % 2;
    const uint8_t *p = base + pbs2p_our_block_at(type, (size_t)(b / 2));
    if (pbs2p_dense_s16(type)) { /* the sub-block codes (the rows' D and M are the caller's) */
        const __m256i sub = _mm256_srli_epi32(gather(rows, at, p), 16 * h), nib = _mm256_set1_epi32(15);
        const __m256i sc0 = _mm256_and_si256(sub, nib), sc1 = _mm256_and_si256(_mm256_srli_epi32(sub, 8), nib);
        c.sc0 = _mm256_or_si256(sc0, _mm256_slli_epi32(sc0, 16));
        c.sc1 = _mm256_or_si256(sc1, _mm256_slli_epi32(sc1, 16));
        c.mc0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(sub, 4), nib));
        c.mc1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(sub, 12), nib));
    }
    if (type == PBS2P_DENSE_Q4_S16) {
        for (int j = 0; j < 4; j++) {
            const __m256i qs = gather(rows, at, p + 4 + 16 * h + 4 * j);
            c.w[j] = _mm256_and_si256(qs, nibble);
            c.w[j + 4] = _mm256_and_si256(_mm256_srli_epi32(qs, 4), nibble);
        }
        return c;
    }
    for (int i = 0; i < 4; i++) {
        const __m256i qs = gather(rows, at, p + 4 + 4 * i);
        c.w[i] = _mm256_and_si256(_mm256_srli_epi32(qs, 4 * h), low2);
        c.w[i + 4] = _mm256_and_si256(_mm256_srli_epi32(qs, 4 * h + 2), low2);
    }
    if (q3) { /* byte k of a row's lane: byte j / 2 of its qh, tested against bit 4(j % 2) + k, as 4 */
        const __m256i qh = gather(rows, at, p + 20 + 4 * h), four = _mm256_set1_epi8(4);
        const __m256i row_bytes = _mm256_setr_epi32(0x00000000, 0x04040404, 0x08080808, 0x0C0C0C0C, 0x00000000,
                                                    0x04040404, 0x08080808, 0x0C0C0C0C);
        for (int j = 0; j < 8; j++) {
            const __m256i spread = _mm256_shuffle_epi8(qh, _mm256_add_epi8(row_bytes, _mm256_set1_epi8((char)(j / 2))));
            const __m256i bit = _mm256_set1_epi32((int)(0x08040201u << (4 * (j % 2))));
            const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
            c.w[j] = _mm256_or_si256(c.w[j], _mm256_and_si256(set, four));
        }
    }
    if (pbs2p_dense_s16(type)) return c;
    const __m256i dm = gather(rows, at, p);
    c.dw = half_lanes(dm, 0);
    c.mw = half_lanes(dm, 1);
    return c;
}

/* Activation codes x[0..3] in every 32-bit lane (a broadcast from memory: a load, not a shuffle). */
INLINE __m256i bcast(const int8_t *x) { return _mm256_broadcastd_epi32(_mm_loadu_si32(x)); }

/* Adds the terms of block b for tokens t0 .. t0 + nt - 1 to acc[t][b % 8] (our two-level blocks: T to acc, the min
 * term to accZ, as qdense_ref.c's s16_row). */
INLINE void block_terms(int32_t type, const block_codes *c, const pbs2p_q8_acts *A, size_t t0, int nt, int32_t b,
                        __m256 acc[][8], __m256 accZ[][8]) {
    const size_t nb = (size_t)A->blocks;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < nt; t++) {
        const int8_t *x = A->q + (t0 + (size_t)t) * (size_t)A->cols + (size_t)b * PBS2P_ACT_BLOCK;
        const size_t xb = (t0 + (size_t)t) * nb + (size_t)b;
        __m256i I;
        if (pbs2p_dense_s16(type)) { /* qdense_ref.c's s16_row: madd by sc instead of 1 gives sc0 I0 and sc1 I1 */
            __m256i u0 = _mm256_maddubs_epi16(c->w[0], bcast(x)), u1 = _mm256_maddubs_epi16(c->w[4], bcast(x + 16));
            for (int j = 1; j < 4; j++) {
                u0 = _mm256_add_epi16(u0, _mm256_maddubs_epi16(c->w[j], bcast(x + 4 * j)));
                u1 = _mm256_add_epi16(u1, _mm256_maddubs_epi16(c->w[j + 4], bcast(x + 16 + 4 * j)));
            }
            const __m256i T = _mm256_add_epi32(_mm256_madd_epi16(u0, c->sc0), _mm256_madd_epi16(u1, c->sc1));
            acc[t][b % 8] = _mm256_fmadd_ps(_mm256_set1_ps(A->d[xb]), _mm256_cvtepi32_ps(T), acc[t][b % 8]);
            accZ[t][b % 8] = _mm256_fmadd_ps(c->mc1, _mm256_set1_ps(A->sh[xb]),
                                             _mm256_fmadd_ps(c->mc0, _mm256_set1_ps(A->sl[xb]), accZ[t][b % 8]));
            continue;
        }
        if (type == PBS2P_GGML_Q8_0) {
            __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
            for (int j = 0; j < 8; j += 2) {
                i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(
                    _mm256_maddubs_epi16(c->w[j], _mm256_sign_epi8(bcast(x + 4 * j), c->sg[j])), ones));
                i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(
                    _mm256_maddubs_epi16(c->w[j + 1], _mm256_sign_epi8(bcast(x + 4 * j + 4), c->sg[j + 1])), ones));
            }
            I = _mm256_add_epi32(i0, i1);
        } else {
            __m256i s0 = _mm256_maddubs_epi16(c->w[0], bcast(x)), s1 = _mm256_maddubs_epi16(c->w[1], bcast(x + 4));
            for (int j = 2; j < 8; j += 2) {
                s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(c->w[j], bcast(x + 4 * j)));
                s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(c->w[j + 1], bcast(x + 4 * j + 4)));
            }
            I = _mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones);
            if (type == PBS2P_GGML_Q4_0) I = _mm256_sub_epi32(I, _mm256_set1_epi32(A->sum[xb] * 8));
        }
        __m256 term = _mm256_mul_ps(_mm256_mul_ps(c->dw, _mm256_set1_ps(A->d[xb])), _mm256_cvtepi32_ps(I));
        if (type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64)
            term = _mm256_add_ps(term, _mm256_mul_ps(c->mw, _mm256_set1_ps(A->s[xb])));
        acc[t][b % 8] = _mm256_add_ps(acc[t][b % 8], term);
    }
}

INLINE __m256 total8(const __m256 a[8]) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])),
                         _mm256_add_ps(_mm256_add_ps(a[4], a[5]), _mm256_add_ps(a[6], a[7])));
}

/* Rows r .. r + n - 1 (n <= 8) for tokens t0 .. t0 + nt - 1 (nt <= TOKENS). */
INLINE void group_tokens(int32_t type, const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t t0, int nt, float *Y,
                         size_t ldy, int32_t r, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    const __m256i at = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)W->row_bytes));
    const uint8_t *base = W->data + (size_t)r * W->row_bytes;
    const int s16 = pbs2p_dense_s16(type);
    __m256 acc[TOKENS][8], accZ[s16 ? TOKENS : 1][8];
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < 8; k++) acc[t][k] = accZ[s16 ? t : 0][k] = _mm256_setzero_ps();
    for (int32_t b = 0; b < A->blocks; b++) {
        const block_codes c = gather_block(type, base, at, rows, b);
        block_terms(type, &c, A, t0, nt, b, acc, accZ);
    }
    __m256 D = _mm256_setzero_ps(), M = D;
    if (s16) { /* the rows' D and M, from their headers */
        const __m256i dm = gather(rows, at, base);
        D = half_lanes(dm, 0), M = half_lanes(dm, 1);
    }
    for (int t = 0; t < nt; t++) {
        __m256 y = total8(acc[t]);
        if (s16) y = _mm256_sub_ps(_mm256_mul_ps(D, y), _mm256_mul_ps(M, total8(accZ[t])));
        _mm256_maskstore_ps(Y + (t0 + (size_t)t) * ldy + (size_t)r, rows, y);
    }
}

#include "qdense_lanes.h"

void pbs2p_qdense_lanes_avx2(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                             int32_t row0, int32_t row1) {
    lanes_rows(W, A, n_tokens, Y, ldy, row0, row1);
}
