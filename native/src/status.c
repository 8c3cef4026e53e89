/* status.c — status code names, the thread-local last-error message and the library version. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[256];

const char *pbs2p_version(void) { return PBS2P_VERSION_STRING; }

const char *pbs2p_status_str(pbs2p_status status) {
    switch (status) {
    case PBS2P_OK: return "ok";
    case PBS2P_ERR_NULL: return "a required pointer is NULL";
    case PBS2P_ERR_ARGUMENT: return "invalid argument";
    case PBS2P_ERR_FORMAT: return "corrupt packed layer";
    case PBS2P_ERR_VERSION: return "unsupported packed format version";
    case PBS2P_ERR_NO_KERNEL: return "kernel variant not available";
    case PBS2P_ERR_NOMEM: return "out of memory";
    case PBS2P_ERR_THREAD: return "could not start a worker thread";
    case PBS2P_ERR_IO: return "cannot read the file";
    case PBS2P_ERR_TRUNCATED: return "file truncated";
    case PBS2P_ERR_GGUF: return "malformed GGUF file";
    case PBS2P_ERR_UNSUPPORTED: return "unsupported GGUF version or tensor type";
    case PBS2P_ERR_NOT_FOUND: return "no such key, tensor or linear";
    case PBS2P_ERR_TYPE: return "key or tensor of another type";
    case PBS2P_ERR_NOT_PBS2P: return "not a pbs2p GGUF file";
    case PBS2P_ERR_NONFINITE: return "non-finite model outputs";
    }
    return "unknown status";
}

const char *pbs2p_last_error(void) { return last_error; }

pbs2p_status pbs2p_fail(pbs2p_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
