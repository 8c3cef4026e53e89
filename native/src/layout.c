/* layout.c — the C reference of the packed layer format v1 (docs/FORMAT.md): validation, stream
 * sizes, row decoding and the exact float32 dequantization. Compiled with -ffp-contract=off. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- bit streams (FORMAT.md section 1) ---- */

static uint32_t bit_at(const uint8_t *s, size_t t) { return (s[t >> 3] >> (t & 7)) & 1u; }

/* The little-endian 64-bit word at b: one load (a compiler does not always merge byte loads into one), byte-swapped
 * on a big-endian machine; the streams are little-endian (FORMAT.md section 1). */
static inline uint64_t le64(const uint8_t *b) {
    uint64_t v;
    memcpy(&v, b, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* n <= 16 bits of a stream of `nbytes` bytes from bit t on, least significant first: one 8-byte load where
 * its bytes are all inside it, else the (at most three) bytes that hold them; bytes past the stream read as 0. */
static inline uint32_t bits_at(const uint8_t *s, size_t nbytes, size_t t, int n) {
    const size_t byte = t >> 3;
    uint32_t v = 0;
    if (byte + 8 <= nbytes) {
        v = (uint32_t)le64(s + byte);
    } else {
        for (size_t b = 0; b < 3 && byte + b < nbytes; b++) v |= (uint32_t)s[byte + b] << (8 * b);
    }
    return (v >> (t & 7)) & ((1u << n) - 1u);
}

/* Field k of width w (w <= 16) of a stream of `nbytes` bytes. */
static inline uint32_t field_in(const uint8_t *s, size_t nbytes, size_t k, int32_t w) {
    return bits_at(s, nbytes, k * (size_t)w, w);
}

static size_t bytes_for_bits(size_t bits) { return (bits + 7) / 8; }

static int64_t binomial(int n, int k) {
    int64_t c = 1;
    for (int i = 1; i <= k; i++) c = c * (n - k + i) / i;
    return c;
}

static int bit_length(int64_t v) {
    int b = 0;
    while (v > 0) { b++; v >>= 1; }
    return b;
}

int pbs2p_mask_code_bits(int n, int m) {
    if (!(m == 2 || m == 4 || m == 8 || m == 16) || n < 1 || n > m) return -1;
    return bit_length(binomial(m, n) - 1);
}

/* ---- metadata (FORMAT.md section 7) ---- */

pbs2p_status pbs2p_layer_sizes_of(const pbs2p_layer_desc *d, pbs2p_layer_sizes *sizes) {
    if (!d) return pbs2p_fail(PBS2P_ERR_NULL, "layer descriptor is NULL");
    if (d->format_version != PBS2P_FORMAT_VERSION)
        return pbs2p_fail(PBS2P_ERR_VERSION, "packed format version %d is not supported (this library reads %d)",
                          (int)d->format_version, PBS2P_FORMAT_VERSION);
    int w_mask = pbs2p_mask_code_bits(d->n, d->m);
    if (w_mask < 0)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "N:M = %d:%d is invalid (M in 2, 4, 8, 16 and 1 <= N <= M)",
                          (int)d->n, (int)d->m);
    if (d->rows < 1 || d->cols < 1 || d->cols % d->m)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "layer %dx%d: rows must be >= 1 and cols a positive multiple of M=%d",
                          (int)d->rows, (int)d->cols, (int)d->m);
    if (d->group_size < 1) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "group_size %d must be >= 1", (int)d->group_size);
    if (d->split < 1 || d->split > 255) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "split %d must be in 1..255", (int)d->split);
    if ((d->has_salient != 0 && d->has_salient != 1) || (d->has_mu != 0 && d->has_mu != 1) ||
        (d->has_col_scale != 0 && d->has_col_scale != 1))
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "has_salient, has_mu and has_col_scale must be 0 or 1");
    if (d->n_salient < 0 || d->n_salient > d->cols || d->has_salient != (d->n_salient > 0))
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "inconsistent salient metadata: has_salient=%d n_salient=%d cols=%d",
                          (int)d->has_salient, (int)d->n_salient, (int)d->cols);
    if (sizes) {
        size_t K = (size_t)d->cols, R = (size_t)d->rows, kept = K / (size_t)d->m * (size_t)d->n;
        size_t G = (K + (size_t)d->group_size - 1) / (size_t)d->group_size;
        size_t nreg = (size_t)d->split + (size_t)d->has_salient;
        int w_group = bit_length(d->split - 1);
        memset(sizes, 0, sizeof *sizes);
        sizes->mask_row_bytes = bytes_for_bits(K / (size_t)d->m * (size_t)w_mask);
        sizes->signs_row_bytes = bytes_for_bits(kept);
        sizes->signs2_row_bytes = d->has_salient ? bytes_for_bits((size_t)d->n_salient) : 0;
        sizes->groups_row_bytes = bytes_for_bits(kept * (size_t)w_group);
        sizes->salient_bytes = d->has_salient ? bytes_for_bits(K) : 0;
        sizes->groups_per_row = G;
        sizes->regions = nreg;
        sizes->alpha_count = nreg * R * G;
        sizes->alpha2_count = d->has_salient ? R * G : 0;
        sizes->mu_count = d->has_mu ? nreg * R * G : 0;
        sizes->col_scale_count = d->has_col_scale ? nreg * K : 0;
    }
    return PBS2P_OK;
}

/* ---- decoder ---- */

/* PBS2P_ERR_FORMAT when a float16 scale is NaN or infinite (exponent bits all ones): every weight of its group would
 * be, and so every output of the layer; a damaged file, refused before any product (GGUF and the ONNX op alike). */
static pbs2p_status check_scales(const pbs2p_layer_desc *d, const pbs2p_layer_sizes *s) {
    const size_t R = (size_t)d->rows, G = s->groups_per_row, nreg = s->regions;
    const struct { const char *name; const uint16_t *v; size_t n; } scales[] = {
        {"alpha", d->alpha, nreg * R * G}, {"alpha2", d->has_salient ? d->alpha2 : NULL, R * G},
        {"mu", d->has_mu ? d->mu : NULL, nreg * R * G}, {"col_scale", d->has_col_scale ? d->col_scale : NULL,
                                                         nreg * (size_t)d->cols}};
    for (size_t a = 0; a < sizeof scales / sizeof scales[0]; a++)
        for (size_t k = 0; scales[a].v && k < scales[a].n; k++)
            if ((scales[a].v[k] & 0x7C00u) == 0x7C00u)
                return pbs2p_fail(PBS2P_ERR_FORMAT, "scale %s[%zu] is %s: a damaged layer (scales must be finite)",
                                  scales[a].name, k, scales[a].v[k] & 0x3FFu ? "NaN" : "infinite");
    return PBS2P_OK;
}

pbs2p_status pbs2p_decoder_init(pbs2p_decoder *dec, const pbs2p_layer_desc *d) {
    memset(dec, 0, sizeof *dec);
    pbs2p_status st = pbs2p_layer_sizes_of(d, &dec->sizes);
    if (st != PBS2P_OK) return st;
    dec->desc = d;
    dec->w_mask = pbs2p_mask_code_bits(d->n, d->m);
    dec->w_group = bit_length(d->split - 1);
    dec->kept_per_row = d->cols / d->m * d->n;
    const char *missing = NULL;
    if (dec->w_mask > 0 && !d->mask) missing = "mask";
    else if (!d->signs) missing = "signs";
    else if (d->has_salient && !d->signs2) missing = "signs2";
    else if (d->has_salient && !d->salient) missing = "salient";
    else if (dec->w_group > 0 && !d->groups) missing = "groups";
    else if (!d->alpha) missing = "alpha";
    else if (d->has_salient && !d->alpha2) missing = "alpha2";
    else if (d->has_mu && !d->mu) missing = "mu";
    else if (d->has_col_scale && !d->col_scale) missing = "col_scale";
    if (missing) return pbs2p_fail(PBS2P_ERR_NULL, "stream '%s' is NULL but the layer metadata requires it", missing);
    pbs2p_status st_scales = check_scales(d, &dec->sizes);
    if (st_scales != PBS2P_OK) return st_scales;

    /* code c -> the c-th m-bit value of popcount n in ascending order (FORMAT.md section 2) */
    dec->n_codes = (int32_t)binomial(d->m, d->n);
    dec->code_value = malloc((size_t)dec->n_codes * sizeof *dec->code_value);
    if (!dec->code_value) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the mask code table");
    int32_t c = 0;
    for (uint32_t b = 0; b < (1u << d->m); b++)
        if (__builtin_popcount(b) == d->n) dec->code_value[c++] = (uint16_t)b;
    /* signs (n bits, in column order) -> their columns' bits in code c's mask, where the table is small */
    if (((size_t)dec->n_codes << d->n) <= 65536) {
        dec->deposit = malloc(((size_t)dec->n_codes << d->n) * sizeof *dec->deposit);
        if (!dec->deposit) { pbs2p_decoder_free(dec); return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory"); }
        for (int32_t code = 0; code < dec->n_codes; code++)
            for (uint32_t v = 0; v < (1u << d->n); v++) {
                uint32_t p = 0, s = v;
                for (uint32_t m = dec->code_value[code]; m; m &= m - 1, s >>= 1) p |= (s & 1u) << __builtin_ctz(m);
                dec->deposit[((size_t)code << d->n) | v] = (uint16_t)p;
            }
    }

    if (d->has_salient) {
        dec->sal_rank = malloc((size_t)d->cols * sizeof *dec->sal_rank);
        if (!dec->sal_rank) { pbs2p_decoder_free(dec); return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory"); }
        int32_t rank = 0;
        for (int32_t j = 0; j < d->cols; j++) dec->sal_rank[j] = bit_at(d->salient, (size_t)j) ? rank++ : -1;
        if (rank != d->n_salient) {
            pbs2p_decoder_free(dec);
            return pbs2p_fail(PBS2P_ERR_FORMAT, "salient stream marks %d columns but n_salient is %d",
                              (int)rank, (int)d->n_salient);
        }
    }
    return PBS2P_OK;
}

void pbs2p_decoder_free(pbs2p_decoder *dec) {
    free(dec->code_value);
    free(dec->sal_rank);
    free(dec->deposit);
    dec->code_value = NULL;
    dec->sal_rank = NULL;
    dec->deposit = NULL;
}

pbs2p_status pbs2p_decode_row(const pbs2p_decoder *dec, int32_t i, pbs2p_row *row) {
    const pbs2p_layer_desc *d = dec->desc;
    const int32_t M = d->m, K = d->cols, full = (int32_t)((1u << M) - 1u);
    const uint8_t *mask = dec->w_mask ? d->mask + (size_t)i * dec->sizes.mask_row_bytes : NULL;
    const uint8_t *signs = d->signs + (size_t)i * dec->sizes.signs_row_bytes;
    const uint8_t *signs2 = d->has_salient ? d->signs2 + (size_t)i * dec->sizes.signs2_row_bytes : NULL;
    const uint8_t *groups = dec->w_group ? d->groups + (size_t)i * dec->sizes.groups_row_bytes : NULL;
    const size_t mask_bytes = dec->sizes.mask_row_bytes, group_bytes = dec->sizes.groups_row_bytes;
    memset(row->kept, 0, (size_t)K);
    memset(row->s0, 0, (size_t)K);
    memset(row->s1, 0, (size_t)K);
    memset(row->region, 0, (size_t)K);
    size_t k = 0; /* index of the next kept element in this row (signs / groups indexing) */
    for (int32_t q = 0; q < K / M; q++) {
        uint32_t b = (uint32_t)full;
        if (mask) {
            uint32_t code = field_in(mask, mask_bytes, (size_t)q, dec->w_mask);
            if (code >= (uint32_t)dec->n_codes)
                return pbs2p_fail(PBS2P_ERR_FORMAT, "row %d, M-group %d: mask code %u >= C(%d, %d) = %d",
                                  (int)i, (int)q, code, (int)M, (int)d->n, (int)dec->n_codes);
            b = dec->code_value[code];
        }
        for (; b; b &= b - 1, k++) { /* the kept columns, in order */
            const int32_t j = q * M + __builtin_ctz(b);
            row->kept[j] = 1;
            row->s0[j] = (uint8_t)bit_at(signs, k);
            const uint32_t grp = groups ? field_in(groups, group_bytes, k, dec->w_group) : 0;
            if (dec->sal_rank && dec->sal_rank[j] >= 0) {
                if (grp != 0)
                    return pbs2p_fail(PBS2P_ERR_FORMAT, "row %d, salient column %d has split group %u (must be 0)",
                                      (int)i, (int)j, grp);
                row->s1[j] = (uint8_t)bit_at(signs2, (size_t)dec->sal_rank[j]);
            } else {
                if (grp >= (uint32_t)d->split)
                    return pbs2p_fail(PBS2P_ERR_FORMAT, "row %d, column %d: split group %u >= split %d",
                                      (int)i, (int)j, grp, (int)d->split);
                row->region[j] = (uint8_t)(grp + (uint32_t)d->has_salient); /* stored region index */
            }
        }
    }
    return PBS2P_OK;
}

int pbs2p_row_words_fit(const pbs2p_layer_desc *d) {
    return !d->has_salient && d->split == 1 && (d->group_size % 32 == 0 || d->group_size >= d->cols);
}

/* Bits [bit, bit + 57) of a stream whose bytes reach at least (bit >> 3) + 8, least significant first. */
static inline uint64_t window57(const uint8_t *s, size_t bit) { return le64(s + (bit >> 3)) >> (bit & 7); }

/* The kept and +1 bits of the four M-groups of 8 columns from M-group q on (kept element k on): one 32-column word,
 * the codes and the signs read once (4 w_mask + 4 n <= 60 bits; the caller has checked both windows lie inside the
 * row's streams). Returns 0 for a code out of range (the caller's slow path says which). */
static inline int octets4(const pbs2p_decoder *dec, const uint8_t *mask, const uint8_t *signs, size_t q, size_t k,
                          uint32_t *kw, uint32_t *pw) {
    const int w = dec->w_mask, n = dec->desc->n;
    const uint64_t codes = window57(mask, q * (size_t)w), sg = window57(signs, k);
    uint32_t kb = 0, pb = 0;
    for (int o = 0; o < 4; o++) {
        const uint32_t code = (uint32_t)(codes >> (o * w)) & ((1u << w) - 1u);
        if (code >= (uint32_t)dec->n_codes) return 0;
        const uint32_t s = (uint32_t)(sg >> (o * n)) & ((1u << n) - 1u);
        kb |= (uint32_t)dec->code_value[code] << (8 * o);
        pb |= (uint32_t)dec->deposit[(size_t)code << n | s] << (8 * o);
    }
    *kw = kb, *pw = pb;
    return 1;
}

pbs2p_status pbs2p_decode_row_words(const pbs2p_decoder *dec, int32_t i, uint32_t *kept, uint32_t *pos) {
    const pbs2p_layer_desc *d = dec->desc;
    const int32_t M = d->m, K = d->cols, full = (int32_t)((1u << M) - 1u);
    const size_t gs = d->group_size < K ? (size_t)d->group_size : (size_t)K, W = (gs + 31) / 32;
    const uint8_t *mask = dec->w_mask ? d->mask + (size_t)i * dec->sizes.mask_row_bytes : NULL;
    const uint8_t *signs = d->signs + (size_t)i * dec->sizes.signs_row_bytes;
    const size_t mask_bytes = dec->sizes.mask_row_bytes, sign_bytes = dec->sizes.signs_row_bytes;
    memset(kept, 0, dec->sizes.groups_per_row * W * sizeof *kept);
    memset(pos, 0, dec->sizes.groups_per_row * W * sizeof *pos);
    size_t k = 0, q = 0; /* the next kept element and the next M-group of this row */
    for (size_t g = 0, c0 = 0; c0 < (size_t)K; g++, c0 += gs) {
        const size_t len = (size_t)K - c0 < gs ? (size_t)K - c0 : gs;
        for (size_t c = 0; c < len; c += (size_t)M, q++) { /* column c0 + c starts M-group q */
            /* M = 8 (the presets' M): four M-groups, a whole word, at once where the streams have 8 bytes to spare */
            if (M == 8 && mask && dec->deposit && c % 32 == 0 && c + 32 <= len &&
                (q * (size_t)dec->w_mask >> 3) + 8 <= mask_bytes && (k >> 3) + 8 <= sign_bytes &&
                octets4(dec, mask, signs, q, k, &kept[g * W + c / 32], &pos[g * W + c / 32])) {
                c += 24, q += 3, k += 4 * (size_t)d->n; /* the loop adds the last 8 columns and M-group */
                continue;
            }
            uint32_t b = (uint32_t)full, code = 0;
            if (mask) {
                code = field_in(mask, mask_bytes, q, dec->w_mask);
                if (code >= (uint32_t)dec->n_codes)
                    return pbs2p_fail(PBS2P_ERR_FORMAT, "row %d, M-group %d: mask code %u >= C(%d, %d) = %d",
                                      (int)i, (int)q, code, (int)M, (int)d->n, (int)dec->n_codes);
                b = dec->code_value[code];
            }
            const int n = d->n; /* every M-group keeps N (a code is a rank among the masks of N bits; no mask: N = M) */
            uint32_t s = bits_at(signs, sign_bytes, k, n), p = 0;
            k += (size_t)n;
            if (dec->deposit) p = dec->deposit[(size_t)code << n | s];
            else for (uint32_t m = b; m; m &= m - 1, s >>= 1) p |= (s & 1u) << __builtin_ctz(m); /* signs to columns */
            /* an M-group (M divides 32 and gs) lies in one word */
            kept[g * W + c / 32] |= b << (c % 32);
            pos[g * W + c / 32] |= p << (c % 32);
        }
    }
    return PBS2P_OK;
}

pbs2p_status pbs2p_row_alloc(pbs2p_row *row, size_t K) {
    uint8_t *p = malloc(4 * K);
    if (!p) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a decoded row of %zu columns", K);
    row->kept = p; row->s0 = p + K; row->s1 = p + 2 * K; row->region = p + 3 * K;
    return PBS2P_OK;
}

/* ---- dequantization (FORMAT.md section 6) ---- */

pbs2p_status pbs2p_layer_dequantize_ref(const pbs2p_layer_desc *d, float *out, size_t out_len) {
    if (!d) return pbs2p_fail(PBS2P_ERR_NULL, "layer descriptor is NULL");
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output buffer is NULL");
    pbs2p_decoder dec;
    pbs2p_status st = pbs2p_decoder_init(&dec, d);
    if (st != PBS2P_OK) return st;
    const size_t R = (size_t)d->rows, K = (size_t)d->cols, G = dec.sizes.groups_per_row;
    if (out_len != R * K) {
        pbs2p_decoder_free(&dec);
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "output holds %zu floats, the layer needs %zu x %zu", out_len, R, K);
    }
    pbs2p_row row = {0};
    if ((st = pbs2p_row_alloc(&row, K)) != PBS2P_OK) { pbs2p_decoder_free(&dec); return st; }
    for (size_t i = 0; i < R && st == PBS2P_OK; i++) {
        st = pbs2p_decode_row(&dec, (int32_t)i, &row);
        for (size_t j = 0; j < K && st == PBS2P_OK; j++) {
            if (!row.kept[j]) { out[i * K + j] = 0.0f; continue; }
            size_t r = row.region[j], g = j / (size_t)d->group_size;
            float a = pbs2p_half_to_float(d->alpha[(r * R + i) * G + g]);
            float v = row.s0[j] ? a : -a;               /* alpha * s0, exact */
            if (d->has_salient && r == 0) {
                float a2 = pbs2p_half_to_float(d->alpha2[i * G + g]);
                v = v + (row.s1[j] ? a2 : -a2);
            }
            if (d->has_mu) v = v + pbs2p_half_to_float(d->mu[(r * R + i) * G + g]);
            if (d->has_col_scale) v = v * pbs2p_half_to_float(d->col_scale[r * K + j]);
            out[i * K + j] = v;
        }
    }
    free(row.kept);
    pbs2p_decoder_free(&dec);
    return st;
}

