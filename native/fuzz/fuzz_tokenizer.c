/* fuzz_tokenizer.c — the fuzz target over an untrusted tokenizer GGUF and untrusted text: load the tokenizer, then
 * tokenize and detokenize the text, checking what holds for every tokenizer the loader accepts.
 *
 * Input layout (seeds: native/fuzz/make_tokenizer_seeds.py):
 *   1. u32, little-endian: L, the byte length of the GGUF part (clamped to what the input holds);
 *   2. L bytes: a GGUF file (only its tokenizer.ggml.* keys matter);
 *   3. the rest: the text, any bytes (valid UTF-8 or not).
 *
 * Checked (abort() = a finding) for every tokenizer that loads:
 *   - the size query (ids NULL, cap 0) and the real call agree on the count, and two calls give the same ids;
 *   - every id is in [0, n_vocab);
 *   - detokenize agrees with its own size query and equals the concatenation of token_to_piece of the ids,
 *     less one leading ' ' for the SentencePiece kind (its Strip decoder); an id outside the vocabulary is
 *     PBS2P_ERR_ARGUMENT, never read.
 * Round trip (detokenize(tokenize(text)) == text) is NOT checked here: it fails by design for a vocabulary missing
 * a byte's token, or whose merges make an added token; tests/native/test_fuzz_regressions.py checks it on the
 * real tokenizers of the seeds. Linked with libFuzzer (PBS2P_FUZZ=ON) or with replay.c's plain main(). */
#include "pbs2p.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS ((size_t)1 << 20) /* the text part is at most the input (libFuzzer -max_len): ids <= bytes + 1 */

static void check_text(const pbs2p_tokenizer *t, const pbs2p_tokenizer_info *info, const char *text, size_t len) {
    size_t need = 0;
    pbs2p_status st = pbs2p_tokenize(t, text, len, NULL, 0, &need);
    if (st != PBS2P_OK && st != PBS2P_ERR_ARGUMENT) return; /* out of memory: nothing to check */
    if (st == PBS2P_OK && need != 0) abort();               /* OK with cap 0 only when there are no ids */
    if (need > MAX_IDS) return;
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids), *again = malloc((need ? need : 1) * sizeof *again);
    size_t n = 0, n2 = 0;
    if (!ids || !again) goto out;
    if (pbs2p_tokenize(t, text, len, ids, need, &n) != PBS2P_OK || n != need) abort();
    if (pbs2p_tokenize(t, text, len, again, need, &n2) != PBS2P_OK || n2 != n) abort();
    if (n && memcmp(ids, again, n * sizeof *ids) != 0) abort(); /* deterministic, read-only tokenizer */
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= info->n_vocab) abort();

    /* detokenize == the pieces, concatenated (SentencePiece: maybe less one leading ' ') */
    size_t bytes = 0;
    st = pbs2p_detokenize(t, ids, n, NULL, 0, &bytes);
    if (st != PBS2P_OK && st != PBS2P_ERR_ARGUMENT) abort();
    size_t cat_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p; size_t pn;
        if (pbs2p_token_to_piece(t, ids[i], &p, &pn) != PBS2P_OK) abort();
        cat_len += pn;
    }
    if (!(bytes == cat_len || (info->pre == 2 && bytes + 1 == cat_len))) abort();
    char *out = malloc(bytes ? bytes : 1), *cat = malloc(cat_len ? cat_len : 1);
    if (out && cat) {
        size_t got = 0, off = 0;
        if (pbs2p_detokenize(t, ids, n, out, bytes, &got) != PBS2P_OK || got != bytes) abort();
        for (size_t i = 0; i < n; i++) {
            const char *p; size_t pn;
            pbs2p_token_to_piece(t, ids[i], &p, &pn);
            if (pn) memcpy(cat + off, p, pn);
            off += pn;
        }
        size_t skip = cat_len - bytes; /* 0, or 1 for the stripped ' ' */
        if ((skip && cat[0] != ' ') || (bytes && memcmp(out, cat + skip, bytes) != 0)) abort();
        if (bytes && pbs2p_detokenize(t, ids, n, out, bytes - 1, &got) != PBS2P_ERR_ARGUMENT) abort(); /* too small */
    }
    free(out);
    free(cat);

    /* ids outside the vocabulary: a status, never a read */
    int32_t bad[2] = {info->n_vocab, -1};
    size_t got = 0;
    char byte;
    if (pbs2p_detokenize(t, bad, 1, &byte, 1, &got) != PBS2P_ERR_ARGUMENT) abort();
    if (pbs2p_detokenize(t, bad + 1, 1, &byte, 1, &got) != PBS2P_ERR_ARGUMENT) abort();
out:
    free(ids);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint32_t L = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    size_t glen = L < size - 4 ? L : size - 4;
    pbs2p_gguf *f = NULL;
    if (pbs2p_gguf_open_memory(data + 4, glen, &f) != PBS2P_OK) return 0;
    pbs2p_tokenizer *t = NULL;
    pbs2p_status st = pbs2p_tokenizer_load(f, &t);
    pbs2p_gguf_close(f); /* the tokenizer copies what it needs: it must outlive the file */
    if (st != PBS2P_OK) {
        if (t) abort(); /* *out = NULL on failure */
        return 0;
    }
    pbs2p_tokenizer_info info;
    if (pbs2p_tokenizer_get_info(t, &info) != PBS2P_OK || info.n_vocab < 1) abort();
    const char *p; size_t pn;
    if (pbs2p_token_to_piece(t, info.n_vocab - 1, &p, &pn) != PBS2P_OK) abort();
    if (pbs2p_token_to_piece(t, info.n_vocab, &p, &pn) != PBS2P_ERR_ARGUMENT) abort();
    check_text(t, &info, (const char *)data + 4 + glen, size - 4 - glen);
    pbs2p_tokenizer_free(t);
    return 0;
}
