/* tokenizer.c — byte-level BPE (GPT-2 style) tokenizer read from the tokenizer.ggml.* keys of a GGUF file.
 *
 * (tokenizer.ggml.model "llama", SentencePiece-style BPE with byte fallback, shares the loading, the added-token
 * matching and the BPE engine here; its normalization, byte fallback and pieces are in tokenizer_spm.c.)
 *
 * Encoding: added tokens (token_type CONTROL or USER_DEFINED) are matched whole first (longest at each
 * position); the text between them is pre-tokenized (tokenizer.ggml.pre "smollm": every \p{N} code point
 * isolated first; then, within each piece, the GPT-2 regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ ;
 * "llama-bpe" (Llama-3) and "qwen2" (Qwen2 / Qwen2.5): their split regex
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * with \p{N} alone in place of \p{N}{1,3} for qwen2),
 * each pre-token's bytes are mapped through the GPT-2 byte-to-unicode table and merged by merge rank
 * (lowest first, leftmost on ties), as Hugging Face tokenizers' BPE does. Decoding maps the code points of
 * each token back through the inverse table; added tokens are emitted as their raw text.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

int pbs2p_unicode_class(uint32_t cp); /* tokenizer_unicode.c: 1 letter, 2 number, 0 other */

enum { CLS_OTHER = 0, CLS_LETTER = 1, CLS_NUMBER = 2, CLS_SPACE = 3 };

/* ---- GPT-2 byte <-> unicode map: printable Latin-1 bytes map to themselves, the others to 256.. ---- */

static int printable_byte(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void byte_map(uint32_t fwd[256]) {
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) fwd[b] = printable_byte(b) ? (uint32_t)b : next++;
}

/* ---- UTF-8 ---- */

/* Decode one code point at s[0..n); *adv = bytes used (1 for an invalid byte, returned as 0xFFFD-like
 * 0x80000000 | byte so it is class "other" and keeps its byte). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *adv) {
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) { *adv = 1; return 0x80000000u | c; }
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *adv = 1; return 0x80000000u | c; }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { *adv = 1; return 0x80000000u | c; }
    *adv = len;
    return cp;
}

uint32_t pbs2p_tok_utf8_next(const unsigned char *s, size_t n, size_t *adv) { return utf8_next(s, n, adv); }

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Unicode White_Space (what Rust regex's \s matches). */
static int is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static int cp_class(uint32_t cp) {
    if (cp & 0x80000000u) return CLS_OTHER;
    if (is_space(cp)) return CLS_SPACE;
    return pbs2p_unicode_class(cp);
}

/* ---- hash maps ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < 2 * n) p <<= 1;
    return p;
}

static int32_t token_lookup(const pbs2p_tokenizer *t, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & t->tok_mask;; i = (i + 1) & t->tok_mask) {
        int32_t v = t->tok_slots[i];
        if (v == 0) return -1;
        int32_t id = v - 1;
        if (t->text_off[id + 1] - t->text_off[id] == n && memcmp(t->text + t->text_off[id], s, n) == 0) return id;
    }
}

int32_t pbs2p_tok_lookup(const pbs2p_tokenizer *t, const char *s, size_t n) { return token_lookup(t, s, n); }

/* Rank of merging (a, b), UINT32_MAX when no merge; *out = the merged id. */
static uint32_t merge_lookup(const pbs2p_tokenizer *t, int32_t a, int32_t b, int32_t *out) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (size_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        if (t->merge_keys[i] == 0) return UINT32_MAX;
        if (t->merge_keys[i] == key) { *out = t->merge_out[i]; return t->merge_rank[i]; }
    }
}

pbs2p_status pbs2p_tok_merge_table(pbs2p_tokenizer *t, size_t count) {
    t->merge_mask = pow2_at_least(count) - 1;
    t->merge_keys = calloc(t->merge_mask + 1, sizeof *t->merge_keys);
    t->merge_rank = malloc((t->merge_mask + 1) * sizeof *t->merge_rank);
    t->merge_out = malloc((t->merge_mask + 1) * sizeof *t->merge_out);
    if (!t->merge_keys || !t->merge_rank || !t->merge_out) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    return PBS2P_OK;
}

void pbs2p_tok_add_merge(pbs2p_tokenizer *t, int32_t a, int32_t b, int32_t c, uint32_t r) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t j = hash_u64(key) & t->merge_mask;
    while (t->merge_keys[j] && t->merge_keys[j] != key) j = (j + 1) & t->merge_mask;
    if (t->merge_keys[j]) return; /* a repeated merge keeps its first (best) rank */
    t->merge_keys[j] = key;
    t->merge_rank[j] = r;
    t->merge_out[j] = c;
}

/* ---- loading ---- */

void pbs2p_tokenizer_free(pbs2p_tokenizer *t) {
    if (!t) return;
    free(t->text); free(t->text_off); free(t->piece); free(t->piece_off); free(t->types); free(t->tok_slots);
    free(t->merge_keys); free(t->merge_rank); free(t->merge_out); free(t->special);
    free(t);
}

static int is_added(int32_t type) { return type == TT_CONTROL || type == TT_USER; }

static pbs2p_status optional_id(const pbs2p_gguf *f, const char *key, int32_t n_vocab, int32_t *out) {
    uint32_t v;
    pbs2p_status s = pbs2p_gguf_get_u32(f, key, &v);
    *out = -1;
    if (s == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (s != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %s is not a u32", key);
    if (v >= (uint32_t)n_vocab) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %s = %u is not < %d tokens", key, v, n_vocab);
    *out = (int32_t)v;
    return PBS2P_OK;
}

static pbs2p_status optional_bool(const pbs2p_gguf *f, const char *key, int32_t *out) {
    int v;
    pbs2p_status s = pbs2p_gguf_get_bool(f, key, &v);
    *out = 0;
    if (s == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (s != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %s is not a bool", key);
    *out = v != 0;
    return PBS2P_OK;
}

/* gpt2: each byte's one-symbol token and every token's bytes through the inverse byte map. */
static pbs2p_status gpt2_pieces(pbs2p_tokenizer *t, uint64_t total) {
    size_t V = (size_t)t->n_vocab;
    uint64_t off = 0;
    uint32_t fwd[256];
    byte_map(fwd);
    int16_t inv[324];
    for (int i = 0; i < 324; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) {
        inv[fwd[b]] = (int16_t)b;
        char u[4];
        size_t un = utf8_put(fwd[b], u);
        int32_t id = token_lookup(t, u, un);
        t->byte_tok[b] = (id >= 0 && !is_added(t->types[id])) ? id : -1;
    }
    t->piece = malloc(total ? total : 1);
    t->piece_off = malloc((V + 1) * sizeof *t->piece_off);
    if (!t->piece || !t->piece_off) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < V; i++) {
        const unsigned char *ts = (const unsigned char *)t->text + t->text_off[i];
        size_t tn = t->text_off[i + 1] - t->text_off[i];
        t->piece_off[i] = off;
        if (is_added(t->types[i])) { memcpy(t->piece + off, ts, tn); off += tn; continue; }
        for (size_t k = 0; k < tn;) {
            size_t adv;
            uint32_t cp = utf8_next(ts + k, tn - k, &adv);
            if (cp < 324 && inv[cp] >= 0) t->piece[off++] = (char)inv[cp];
            else { memcpy(t->piece + off, ts + k, adv); off += adv; } /* not a mapped symbol: keep the text */
            k += adv;
        }
    }
    t->piece_off[V] = off;
    return PBS2P_OK;
}

static const uint64_t *g_sort_off; /* qsort has no context argument: only used inside load, single call */

static int by_length_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint64_t lx = g_sort_off[x + 1] - g_sort_off[x], ly = g_sort_off[y + 1] - g_sort_off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static pbs2p_status load(const pbs2p_gguf *f, pbs2p_tokenizer *t) {
    const char *s; size_t n;
    pbs2p_status st = pbs2p_gguf_get_str(f, "tokenizer.ggml.model", &s, &n);
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_NOT_FOUND, "tokenizer: no tokenizer.ggml.model key");
    if (st != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.model is not a string");
    int spm = n == 5 && memcmp(s, "llama", 5) == 0;
    if (!(n == 4 && memcmp(s, "gpt2", 4) == 0) && !spm)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "tokenizer: model \"%.*s\" is not supported (\"gpt2\" byte-level BPE, "
                          "\"llama\" SentencePiece-style BPE)", (int)(n > 64 ? 64 : n), s);
    t->pre = spm ? PRE_SPM : PRE_GPT2;
    st = spm ? PBS2P_ERR_NOT_FOUND : pbs2p_gguf_get_str(f, "tokenizer.ggml.pre", &s, &n); /* llama: tokenizer_spm.c */
    if (st == PBS2P_OK) {
        if (n == 6 && memcmp(s, "smollm", 6) == 0) t->pre = PRE_SMOLLM;
        else if (n == 9 && memcmp(s, "llama-bpe", 9) == 0) t->pre = PRE_LLAMA3;
        else if (n == 5 && memcmp(s, "qwen2", 5) == 0) t->pre = PRE_QWEN2;
        else if (!((n == 5 && memcmp(s, "gpt-2", 5) == 0) || (n == 7 && memcmp(s, "default", 7) == 0)))
            return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer \"%.*s\" is not supported "
                              "(gpt-2, smollm, llama-bpe, qwen2, default)", (int)(n > 64 ? 64 : n), s);
    } else if (st != PBS2P_ERR_NOT_FOUND) {
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.pre is not a string");
    }

    /* tokens */
    const void *data; uint64_t count;
    st = pbs2p_gguf_get_arr(f, "tokenizer.ggml.tokens", PBS2P_GGUF_STRING, &data, &count);
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_NOT_FOUND, "tokenizer: no tokenizer.ggml.tokens key");
    if (st != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens is not an array of strings");
    if (count == 0 || count > (uint64_t)INT32_MAX - 1)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %llu tokens (need 1..2^31-2)", (unsigned long long)count);
    t->n_vocab = (int32_t)count;
    size_t V = (size_t)count;
    uint64_t total = 0;
    for (size_t i = 0; i < V; i++) {
        if ((st = pbs2p_gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &s, &n)) != PBS2P_OK) return st;
        if (n == 0) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: token %zu is empty", i);
        for (size_t k = 0, adv; k < n; k += adv) /* GGUF strings are UTF-8: a token that is not is a corrupt file */
            if (utf8_next((const unsigned char *)s + k, n - k, &adv) & 0x80000000u)
                return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: token %zu is not UTF-8 (byte %zu)", i, k);
        total += n;
    }
    t->text = malloc(total ? total : 1);
    t->text_off = malloc((V + 1) * sizeof *t->text_off);
    t->types = malloc(V * sizeof *t->types);
    t->tok_mask = pow2_at_least(V) - 1;
    t->tok_slots = calloc(t->tok_mask + 1, sizeof *t->tok_slots);
    if (!t->text || !t->text_off || !t->types || !t->tok_slots) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    uint64_t off = 0;
    for (size_t i = 0; i < V; i++) {
        pbs2p_gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &s, &n);
        memcpy(t->text + off, s, n);
        t->text_off[i] = off;
        off += n;
    }
    t->text_off[V] = off;

    st = pbs2p_gguf_get_arr(f, "tokenizer.ggml.token_type", PBS2P_GGUF_INT32, &data, &count);
    if (st == PBS2P_OK) {
        if (count != V) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: %llu token types for %zu tokens",
                                          (unsigned long long)count, V);
        for (size_t i = 0; i < V; i++) {
            int32_t v;
            memcpy(&v, (const char *)data + 4 * i, 4); /* little-endian host (checked by the GGUF reader) */
            if (v < TT_NORMAL || v > TT_BYTE) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: token %zu has type %d (1..6)", i, v);
            t->types[i] = v;
        }
    } else if (st == PBS2P_ERR_NOT_FOUND) {
        for (size_t i = 0; i < V; i++) t->types[i] = TT_NORMAL;
    } else {
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type is not an i32 array");
    }

    if (spm && (st = pbs2p_spm_respell(f, t, &total)) != PBS2P_OK) return st;

    /* text -> id (the first id wins for a duplicated text, as a vocab map would keep one) */
    for (size_t i = 0; i < V; i++) {
        const char *ts = t->text + t->text_off[i];
        size_t tn = t->text_off[i + 1] - t->text_off[i];
        size_t j = hash_bytes(ts, tn) & t->tok_mask;
        int dup = 0;
        for (; t->tok_slots[j]; j = (j + 1) & t->tok_mask) {
            int32_t id = t->tok_slots[j] - 1;
            if (t->text_off[id + 1] - t->text_off[id] == tn && memcmp(t->text + t->text_off[id], ts, tn) == 0) { dup = 1; break; }
        }
        if (!dup) t->tok_slots[j] = (int32_t)i + 1;
    }

    st = spm ? pbs2p_spm_load(f, t, total) : gpt2_pieces(t, total); /* byte tokens, per-token decoded bytes */
    if (st != PBS2P_OK) return st;

    /* merges "left right" in rank order */
    st = pbs2p_gguf_get_arr(f, "tokenizer.ggml.merges", PBS2P_GGUF_STRING, &data, &count);
    if (st == PBS2P_ERR_NOT_FOUND) count = 0;
    else if (st != PBS2P_OK) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: tokenizer.ggml.merges is not an array of strings");
    if (count > UINT32_MAX - 1) return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: too many merges");
    if (spm && count == 0) { /* a SentencePiece file: merges derived from the scores or token order */
        if ((st = pbs2p_spm_merges_from_scores(f, t)) != PBS2P_OK) return st;
    } else if ((st = pbs2p_tok_merge_table(t, (size_t)count)) != PBS2P_OK) {
        return st;
    }
    char *buf = NULL;
    size_t buf_cap = 0;
    for (uint64_t r = 0; r < count; r++) {
        pbs2p_gguf_get_arr_str(f, "tokenizer.ggml.merges", r, &s, &n);
        const char *sp = n > 2 ? memchr(s + 1, ' ', n - 2) : NULL; /* first space, neither end */
        if (!sp) { free(buf); return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: merge %llu is not \"left right\"", (unsigned long long)r); }
        size_t ln = (size_t)(sp - s), rn = n - ln - 1;
        int32_t a = token_lookup(t, s, ln), b = token_lookup(t, sp + 1, rn);
        if (buf_cap < ln + rn) {
            free(buf);
            buf_cap = 2 * (ln + rn);
            if (!(buf = malloc(buf_cap))) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
        }
        memcpy(buf, s, ln);
        memcpy(buf + ln, sp + 1, rn);
        int32_t c = token_lookup(t, buf, ln + rn);
        if (a < 0 || b < 0 || c < 0) {
            free(buf);
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tokenizer: merge %llu \"%.*s\" names a token not in the vocabulary",
                              (unsigned long long)r, (int)(n > 64 ? 64 : n), s);
        }
        pbs2p_tok_add_merge(t, a, b, c, (uint32_t)r);
    }
    free(buf);

    /* added tokens, longest first */
    t->special = malloc(V * sizeof *t->special);
    if (!t->special) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < V; i++) /* llama: the unknown token too, as llama.cpp (HF adds <unk> as a special token) */
        if (is_added(t->types[i]) || (spm && t->types[i] == TT_UNKNOWN)) t->special[t->n_special++] = (int32_t)i;
    g_sort_off = t->text_off;
    qsort(t->special, t->n_special, sizeof *t->special, by_length_desc);

    pbs2p_tokenizer_info *info = &t->info;
    info->n_vocab = t->n_vocab;
    if (spm && count == 0) count = t->info.n_merges; /* derived, not listed */
    info->n_merges = (int32_t)(count > INT32_MAX ? INT32_MAX : count);
    info->n_added = (int32_t)t->n_special;
    info->pre = t->pre;
    if ((st = optional_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &info->bos)) != PBS2P_OK) return st;
    if ((st = optional_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &info->eos)) != PBS2P_OK) return st;
    if ((st = optional_id(f, "tokenizer.ggml.unknown_token_id", t->n_vocab, &info->unk)) != PBS2P_OK) return st;
    if ((st = optional_id(f, "tokenizer.ggml.padding_token_id", t->n_vocab, &info->pad)) != PBS2P_OK) return st;
    if ((st = optional_bool(f, "tokenizer.ggml.add_bos_token", &info->add_bos)) != PBS2P_OK) return st;
    if ((st = optional_bool(f, "tokenizer.ggml.add_eos_token", &info->add_eos)) != PBS2P_OK) return st;
    return PBS2P_OK;
}

pbs2p_status pbs2p_tokenizer_load(const pbs2p_gguf *f, pbs2p_tokenizer **out) {
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "pbs2p_tokenizer_load: out is NULL");
    *out = NULL;
    if (!f) return pbs2p_fail(PBS2P_ERR_NULL, "pbs2p_tokenizer_load: file is NULL");
    pbs2p_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    pbs2p_status st = load(f, t);
    if (st != PBS2P_OK) { pbs2p_tokenizer_free(t); return st; }
    *out = t;
    return PBS2P_OK;
}

pbs2p_status pbs2p_tokenizer_get_info(const pbs2p_tokenizer *t, pbs2p_tokenizer_info *out) {
    if (!t || !out) return pbs2p_fail(PBS2P_ERR_NULL, "pbs2p_tokenizer_get_info: NULL argument");
    *out = t->info;
    return PBS2P_OK;
}

/* ---- encoding ---- */

void pbs2p_tok_emit(emit_state *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static int pair_less(const bpe_pair *x, const bpe_pair *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(emit_state *e, bpe_pair p) {
    size_t i = e->n_heap++;
    while (i > 0 && pair_less(&p, &e->heap[(i - 1) / 2])) { e->heap[i] = e->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    e->heap[i] = p;
}

static bpe_pair heap_pop(emit_state *e) {
    bpe_pair top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void push_pair(const pbs2p_tokenizer *t, emit_state *e, int32_t pos) {
    if (pos < 0 || e->next[pos] < 0) return;
    int32_t r = e->next[pos], merged;
    uint32_t rank = merge_lookup(t, e->sym[pos], e->sym[r], &merged);
    if (rank != UINT32_MAX) heap_push(e, (bpe_pair){rank, (uint32_t)pos, e->sym[pos], e->sym[r], merged});
}

pbs2p_status pbs2p_tok_work(emit_state *e, size_t n) {
    if (n <= e->work_cap) return PBS2P_OK;
    size_t c = n < 64 ? 64 : 2 * n;
    if (c > (size_t)INT32_MAX) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "tokenizer: a pre-token of %zu symbols", n);
    free(e->next); free(e->prev); free(e->heap);
    int32_t *sym = realloc(e->sym, c * sizeof *e->sym); /* kept: the SentencePiece path grows it while filling */
    if (!sym) free(e->sym);
    e->sym = sym;
    e->next = malloc(c * sizeof *e->next);
    e->prev = malloc(c * sizeof *e->prev);
    e->heap = malloc(3 * c * sizeof *e->heap);
    e->work_cap = (e->sym && e->next && e->prev && e->heap) ? c : 0;
    if (!e->work_cap) return pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory");
    return PBS2P_OK;
}

/* Repeatedly merge the adjacent pair of lowest rank (leftmost on ties) over a linked list of symbols, with a
 * heap of candidate pairs (stale entries skipped): O(k log k). */
void pbs2p_tok_bpe(const pbs2p_tokenizer *t, emit_state *e, int32_t k) {
    if (k == 0) return;
    for (int32_t i = 0; i < k; i++) { e->prev[i] = i - 1; e->next[i] = i + 1 < k ? i + 1 : -1; }
    e->n_heap = 0;
    for (int32_t i = 0; i + 1 < k; i++) push_pair(t, e, i);
    while (e->n_heap) {
        bpe_pair p = heap_pop(e);
        int32_t l = (int32_t)p.pos, r = e->next[l];
        if (e->sym[l] != p.left || r < 0 || e->sym[r] != p.right) continue; /* stale: a neighbour merged since */
        e->sym[l] = p.merged;
        e->sym[r] = -1;  /* dead */
        e->next[l] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = l;
        push_pair(t, e, e->prev[l]);
        push_pair(t, e, l);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) pbs2p_tok_emit(e, e->sym[i]);
}

/* BPE over the bytes s[0..n) of one pre-token. */
static pbs2p_status bpe_word(const pbs2p_tokenizer *t, const unsigned char *s, size_t n, emit_state *e) {
    pbs2p_status st = pbs2p_tok_work(e, n);
    if (st != PBS2P_OK) return st;
    int32_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_tok[s[i]];
        if (id >= 0) e->sym[k++] = id; /* a byte without a token is dropped, as HF BPE does with unk_token null
                                          (byte-level vocabularies set none; SmolLM2 lacks e.g. 0xF1) */
    }
    pbs2p_tok_bpe(t, e, k);
    return PBS2P_OK;
}

static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Length of the contraction 's|'t|'re|'ve|'m|'ll|'d at cps[i] (case-insensitive with fold), 0 when none. */
static size_t contraction(const uint32_t *cps, size_t i, size_t n, int fold) {
    if (cps[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
    if (fold) { a = lower_ascii(a); b = lower_ascii(b); }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* GPT-2 regex over the code points of one piece; cps/cls/pos: code point, class, byte offset (pos[n] = end). */
static pbs2p_status gpt2_split(const pbs2p_tokenizer *t, const unsigned char *text, const uint32_t *cps,
                               const uint8_t *cls, const size_t *pos, size_t n, emit_state *e) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = cps[i];
        size_t j = i + contraction(cps, i, n, 0);
        if (j == i) {
            size_t k = (c == ' ' && i + 1 < n && cls[i + 1] != CLS_SPACE) ? i + 1 : i; /* optional leading space */
            int want = cls[k];
            if (want != CLS_SPACE) {
                j = k;
                while (j < n && cls[j] == want) j++;
            } else {  /* \s+(?!\S) | \s+ */
                j = i;
                while (j < n && cls[j] == CLS_SPACE) j++;
                if (j < n && j - i > 1) j--; /* leave the last space to prefix the next word */
            }
        }
        pbs2p_status st = bpe_word(t, text + pos[i], pos[j] - pos[i], e);
        if (st != PBS2P_OK) return st;
        i = j;
    }
    return PBS2P_OK;
}

static int is_newline(uint32_t c) { return c == '\r' || c == '\n'; }

/* End of the Llama-3 / Qwen2 split regex's match at cps[i] (file comment): its alternatives tried in order, as the
 * regex engine does; max_digits: 3 (llama-bpe) or 1 (qwen2). */
static size_t llama3_match(const uint32_t *cps, const uint8_t *cls, size_t i, size_t n, size_t max_digits) {
    uint32_t c = cps[i];
    size_t j = contraction(cps, i, n, 1);  /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (j) return i + j;
    if (cls[i] == CLS_LETTER || (cls[i] != CLS_NUMBER && !is_newline(c) && i + 1 < n && cls[i + 1] == CLS_LETTER)) {
        for (j = i + 1; j < n && cls[j] == CLS_LETTER; j++) {}  /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        return j;
    }
    if (cls[i] == CLS_NUMBER) {  /* \p{N}{1,3} or \p{N} */
        for (j = i; j < n && j - i < max_digits && cls[j] == CLS_NUMBER; j++) {}
        return j;
    }
    if (cls[i] == CLS_OTHER || (c == ' ' && i + 1 < n && cls[i + 1] == CLS_OTHER)) {
        for (j = c == ' ' ? i + 1 : i; j < n && cls[j] == CLS_OTHER; j++) {}  /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
        while (j < n && is_newline(cps[j])) j++;
        return j;
    }
    size_t r = i, last_nl = n;  /* whitespace */
    for (; r < n && cls[r] == CLS_SPACE; r++)
        if (is_newline(cps[r])) last_nl = r;
    if (last_nl < n) return last_nl + 1;  /* \s*[\r\n]+: up to the run's last newline */
    if (r < n && r - i > 1) return r - 1; /* \s+(?!\S): leave the last space to the next word */
    return r;                             /* \s+ */
}

/* The Llama-3 / Qwen2 split regex over the code points of one piece (gpt2_split's arguments). */
static pbs2p_status llama3_split(const pbs2p_tokenizer *t, const unsigned char *text, const uint32_t *cps,
                                 const uint8_t *cls, const size_t *pos, size_t n, size_t max_digits, emit_state *e) {
    for (size_t i = 0, j; i < n; i = j) {
        j = llama3_match(cps, cls, i, n, max_digits);
        pbs2p_status st = bpe_word(t, text + pos[i], pos[j] - pos[i], e);
        if (st != PBS2P_OK) return st;
    }
    return PBS2P_OK;
}

/* Pre-tokenize and encode text[0..len) that holds no added token; it starts at byte `start` of the input. */
static pbs2p_status encode_plain(const pbs2p_tokenizer *t, const unsigned char *text, size_t len, size_t start_byte,
                                 emit_state *e, uint32_t *cps, uint8_t *cls, size_t *pos) {
    if (t->pre == PRE_SPM) return pbs2p_spm_encode(t, text, len, start_byte, e);
    size_t n = 0;
    for (size_t b = 0; b < len;) {
        size_t adv;
        cps[n] = utf8_next(text + b, len - b, &adv);
        cls[n] = (uint8_t)cp_class(cps[n]);
        pos[n] = b;
        n++;
        b += adv;
    }
    pos[n] = len;
    if (t->pre == PRE_LLAMA3 || t->pre == PRE_QWEN2)
        return llama3_split(t, text, cps, cls, pos, n, t->pre == PRE_LLAMA3 ? 3 : 1, e);
    if (t->pre != PRE_SMOLLM) return gpt2_split(t, text, cps, cls, pos, n, e);
    /* smollm: every number code point is a piece of its own; the regex runs within the pieces between */
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && cls[i] != CLS_NUMBER) continue;
        pbs2p_status st;
        if (i > start && (st = gpt2_split(t, text, cps + start, cls + start, pos + start, i - start, e)) != PBS2P_OK) return st;
        if (i < n && (st = bpe_word(t, text + pos[i], pos[i + 1] - pos[i], e)) != PBS2P_OK) return st;
        start = i + 1;
    }
    return PBS2P_OK;
}

pbs2p_status pbs2p_tokenize(const pbs2p_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t cap,
                            size_t *n_out) {
    if (!t || !n_out || (!text && len) || (!ids && cap))
        return pbs2p_fail(PBS2P_ERR_NULL, "pbs2p_tokenize: NULL argument");
    *n_out = 0;
    emit_state e = {ids, cap, 0, NULL, NULL, NULL, NULL, 0, 0};
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    uint8_t *cls = malloc(len + 1);
    size_t *pos = malloc((len + 1) * sizeof *pos);
    pbs2p_status st = PBS2P_OK;
    if (!cps || !cls || !pos) { st = pbs2p_fail(PBS2P_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
    const unsigned char *s = (const unsigned char *)text;
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        int32_t hit = -1;
        for (size_t k = 0; k < t->n_special; k++) {
            int32_t id = t->special[k];
            size_t tn = t->text_off[id + 1] - t->text_off[id];
            if (tn <= len - i && (unsigned char)t->text[t->text_off[id]] == s[i] &&
                memcmp(t->text + t->text_off[id], s + i, tn) == 0) { hit = id; break; }
        }
        if (hit < 0) { i++; continue; }
        if (i > start && (st = encode_plain(t, s + start, i - start, start, &e, cps, cls, pos)) != PBS2P_OK) goto done;
        pbs2p_tok_emit(&e, hit);
        i += t->text_off[hit + 1] - t->text_off[hit];
        start = i;
    }
    if (len > start) st = encode_plain(t, s + start, len - start, start, &e, cps, cls, pos);
done:
    free(cps); free(cls); free(pos); free(e.sym); free(e.next); free(e.prev); free(e.heap);
    if (st != PBS2P_OK) return st;
    *n_out = e.n;
    if (e.n > cap) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "pbs2p_tokenize: %zu ids do not fit in %zu", e.n, cap);
    return PBS2P_OK;
}

/* ---- decoding ---- */

pbs2p_status pbs2p_token_to_piece(const pbs2p_tokenizer *t, int32_t id, const char **piece, size_t *len) {
    if (!t || !piece || !len) return pbs2p_fail(PBS2P_ERR_NULL, "pbs2p_token_to_piece: NULL argument");
    if (id < 0 || id >= t->n_vocab)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "pbs2p_token_to_piece: id %d is not < %d tokens", id, t->n_vocab);
    *piece = t->piece + t->piece_off[id];
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return PBS2P_OK;
}

pbs2p_status pbs2p_detokenize(const pbs2p_tokenizer *t, const int32_t *ids, size_t n, char *out, size_t cap,
                              size_t *n_out) {
    if (!t || !n_out || (!ids && n) || (!out && cap)) return pbs2p_fail(PBS2P_ERR_NULL, "pbs2p_detokenize: NULL argument");
    *n_out = 0;
    size_t need = 0;
    int strip = t->space_prefix; /* HF's Strip(" ", 1, 0) decoder: one ' ' off the start of the whole text */
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return pbs2p_fail(PBS2P_ERR_ARGUMENT, "pbs2p_detokenize: ids[%zu] = %d is not < %d tokens", i, ids[i], t->n_vocab);
        const char *p = t->piece + t->piece_off[ids[i]];
        size_t pn = t->piece_off[ids[i] + 1] - t->piece_off[ids[i]];
        if (strip && pn) {
            if (p[0] == ' ') { p++; pn--; }
            strip = 0;
        }
        if (pn && need + pn <= cap) memcpy(out + need, p, pn); /* out may be NULL for a size query */
        need += pn;
    }
    *n_out = need;
    if (need > cap) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "pbs2p_detokenize: %zu bytes do not fit in %zu", need, cap);
    return PBS2P_OK;
}
