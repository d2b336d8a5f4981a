/* The record path's inner loop in C: framing and counting of compact RECORD lines in one pass.
 *
 * scan_records(buffer, start, end, heads, max_bytes, moved) -> stop
 *
 * Walks the complete lines of buffer[start:end] and stops at the first one that is not a
 * shortcut RECORD, or at the first byte of a line that has no newline yet. A shortcut RECORD is
 * exactly what the Python loop of record_path.forward takes its shortcut for: the line's head up
 * to the quote after the stream name plus 10 bytes (the name's closing quote, then ``,"data":{``)
 * is a key of ``heads``, the line is shorter than ``max_bytes``, ends with ``}\n`` and is valid JSON
 * in valid UTF-8 (checked in one pass: bytes >= 0x80 may only be in strings).
 * Every such line is counted in its stream's counter (``heads[key]``, a list [records, bytes]),
 * added once per run of one stream rather than once per line, and the counter's id() is added to
 * the set ``moved`` (once per run too: the tracker then looks only at the streams that moved since
 * the last STATE, not at every stream). Returns ``stop``: the lines of
 * buffer[start:stop] were all counted and are to be forwarded unchanged; buffer[stop:] begins
 * with a line for the Python path (or an unfinished line, or stop == end).
 *
 * Each line is read once: the JSON walk itself finds where the line's message ends (no search
 * for the newline first). Strings, most of a record's bytes, are skipped 16 bytes a step with
 * SSE2 (every x86-64) or 32 with AVX2 where the CPU has it, chosen once at import (the build
 * needs no -mavx2, so one wheel runs on any x86-64); one byte a step on other CPUs.
 *
 * The fallback in Python (record_path._python_forward) does the same per line; the unit tests
 * run over both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <errno.h>
#include <fcntl.h> /* tee(2): Python.h's pyconfig.h defines _GNU_SOURCE */
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static const char COMPACT[] = "{\"type\":\"RECORD\",\"record\":{\"stream\":\"";
#define COMPACT_LEN ((Py_ssize_t)(sizeof(COMPACT) - 1))
static const char DATA_OBJECT[] = "\",\"data\":{";
#define DATA_OBJECT_LEN ((Py_ssize_t)(sizeof(DATA_OBJECT) - 1))

/* The length of the valid UTF-8 sequence that starts at p[i] (a byte >= 0x80), or 0: valid as
 * Python's strict decoder has it, with no overlong forms, no surrogates (U+D800..U+DFFF) and
 * nothing past U+10FFFF. */
static inline Py_ssize_t
utf8_sequence(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    unsigned char c = p[i];
    Py_ssize_t follow;
    unsigned char low = 0x80, high = 0xBF; /* the range of the first continuation byte */
    if (c >= 0xC2 && c <= 0xDF) {
        follow = 1;
    }
    else if (c == 0xE0) {
        follow = 2;
        low = 0xA0;
    }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        follow = 2;
    }
    else if (c == 0xED) {
        follow = 2;
        high = 0x9F;
    }
    else if (c == 0xF0) {
        follow = 3;
        low = 0x90;
    }
    else if (c >= 0xF1 && c <= 0xF3) {
        follow = 3;
    }
    else if (c == 0xF4) {
        follow = 3;
        high = 0x8F;
    }
    else {
        return 0;
    }
    if (i + follow >= n || p[i + 1] < low || p[i + 1] > high) {
        return 0;
    }
    for (Py_ssize_t k = 2; k <= follow; k++) {
        if ((p[i + k] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return follow + 1;
}

/* JSON (RFC 8259) syntax, one pass without recursion: what the shortcut forwards must be what
 * the envelope decode would have taken, or a malformed line would be counted as a record that
 * no destination can read. Nesting is bounded by the stack (lines are under max_bytes anyway). */
#define JSON_MAX_DEPTH 1024

/* JSON's whitespace but the newline: the walk runs over the buffer, not over one line cut out
 * beforehand, and must stop at the newline that ends the line (see scan_records). */
static Py_ssize_t
skip_space(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) {
        i++;
    }
    return i;
}

static int
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Plain ASCII string content ends at a quote, a backslash, a control character or a byte >= 0x80
 * (UTF-8, checked by skip_string). Read as signed bytes, the control characters and the bytes
 * >= 0x80 are exactly those below 0x20, so one compare finds both. */
#if defined(__SSE2__)
/* One bit for each byte of p[0:16] that ends plain string content. */
static inline unsigned
stops_sse2(const unsigned char *p)
{
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                               _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

/* The index of the first byte at or after i that ends plain string content, or n: 16 bytes a
 * step with SSE2 (every x86-64), the rest (and everything on other CPUs) one byte at a time. */
static Py_ssize_t
next_stop_sse2(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
#if defined(__SSE2__)
    while (i + 16 <= n) {
        unsigned mask = stops_sse2(p + i);
        if (mask != 0) {
            return i + __builtin_ctz(mask);
        }
        i += 16;
    }
#endif
    while (i < n && p[i] != '"' && p[i] != '\\' && p[i] >= 0x20 && p[i] < 0x80) {
        i++;
    }
    return i;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The same, 32 bytes a step. Only this function is compiled for AVX2 (the build has no -mavx2:
 * the wheel must run on any x86-64), and it is called only where the CPU has AVX2 (use_avx2, set
 * once when the module is imported). AVX-512 (64 bytes a step) was tried: slower here, dropped. */
#define SCAN_HAS_AVX2 1
#include <immintrin.h>
static int use_avx2 = 0;

__attribute__((target("avx2"))) static Py_ssize_t
next_stop_avx2(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    const __m256i quote = _mm256_set1_epi8('"'), slash = _mm256_set1_epi8('\\'), space = _mm256_set1_epi8(0x20);
    while (i + 32 <= n) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i hit = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(x, quote), _mm256_cmpeq_epi8(x, slash)),
                                      _mm256_cmpgt_epi8(space, x));
        unsigned mask = (unsigned)_mm256_movemask_epi8(hit);
        if (mask != 0) {
            return i + __builtin_ctz(mask);
        }
        i += 32;
    }
    return next_stop_sse2(p, i, n); /* the last 0-31 bytes */
}
#endif

/* The same, choosing the way: most strings (keys, short values) end within their first 16
 * bytes, which are looked at here, inline; only a longer string goes on in a call. */
static inline Py_ssize_t
next_stop(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
#if defined(__SSE2__)
    if (i + 16 <= n) {
        unsigned mask = stops_sse2(p + i);
        if (mask != 0) {
            return i + __builtin_ctz(mask);
        }
        i += 16;
#if defined(SCAN_HAS_AVX2)
        if (use_avx2) {
            return next_stop_avx2(p, i, n);
        }
#endif
    }
#endif
    return next_stop_sse2(p, i, n);
}

/* p[i] is the opening quote: the index after the closing one, or -1. */
static inline Py_ssize_t
skip_string(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    i++;
    for (;;) {
        i = next_stop(p, i, n);
        if (i >= n) {
            return -1;
        }
        unsigned char c = p[i];
        if (c == '"') {
            return i + 1;
        }
        if (c >= 0x80) { /* UTF-8, checked here: outside strings such a byte is no JSON anyway */
            Py_ssize_t length = utf8_sequence(p, i, n);
            if (length == 0) {
                return -1;
            }
            i += length;
            continue;
        }
        if (c < 0x20 || i + 1 >= n) {
            return -1;
        }
        unsigned char e = p[i + 1]; /* c is a backslash */
        if (e == 'u') {
            if (i + 5 >= n || !is_hex(p[i + 2]) || !is_hex(p[i + 3]) || !is_hex(p[i + 4]) || !is_hex(p[i + 5])) {
                return -1;
            }
            i += 6;
        }
        else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            i += 2;
        }
        else {
            return -1;
        }
    }
}

static Py_ssize_t
skip_digits(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        i++;
    }
    return i;
}

/* p[i] is '-' or a digit: the index after the number, or -1. */
static Py_ssize_t
skip_number(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
    if (p[i] == '-') {
        i++;
    }
    if (i >= n) {
        return -1;
    }
    if (p[i] == '0') {
        i++;
    }
    else if (p[i] >= '1' && p[i] <= '9') {
        i = skip_digits(p, i, n);
    }
    else {
        return -1;
    }
    if (i < n && p[i] == '.') {
        if (i + 1 >= n || p[i + 1] < '0' || p[i + 1] > '9') {
            return -1;
        }
        i = skip_digits(p, i + 1, n);
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) {
            i++;
        }
        if (i >= n || p[i] < '0' || p[i] > '9') {
            return -1;
        }
        i = skip_digits(p, i, n);
    }
    return i;
}

/* Where the JSON value that p begins ends (the index after the message's closing brace), or -1
 * if p[0:n] has no whole JSON value there; p[0:i] is the head of a compact RECORD: three objects
 * opened (the message, its record, the data), the last just opened. The head was compared byte
 * for byte by the caller, so its strings need no second look. No newline is ever stepped over:
 * it is not whitespace here, and no string, number or literal may hold one. */
static Py_ssize_t
json_end_after_head(const unsigned char *p, Py_ssize_t n, Py_ssize_t i)
{
    unsigned char open[JSON_MAX_DEPTH]; /* the containers we are in (no initializer: it would
                                           * zero all of it for every line) */
    int depth = 3;
    open[0] = open[1] = open[2] = '{';
    unsigned char c;
    i = skip_space(p, i, n);
    if (i < n && p[i] == '}') {
        depth--;
        i++;
        goto after_value;
    }
    goto member_key;
    for (;;) {
        /* a value starts at i */
        if (i >= n) {
            return -1;
        }
        c = p[i];
        if (c == '{' || c == '[') {
            if (depth == JSON_MAX_DEPTH) {
                return -1;
            }
            open[depth++] = c;
            i = skip_space(p, i + 1, n);
            if (i < n && p[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (c == '{') {
                goto member_key;
            }
            continue;
        }
        if (c == '"') {
            i = skip_string(p, i, n);
        }
        else if (c == '-' || (c >= '0' && c <= '9')) {
            i = skip_number(p, i, n);
        }
        else if (c == 't' && n - i >= 4 && memcmp(p + i, "true", 4) == 0) {
            i += 4;
        }
        else if (c == 'f' && n - i >= 5 && memcmp(p + i, "false", 5) == 0) {
            i += 5;
        }
        else if (c == 'n' && n - i >= 4 && memcmp(p + i, "null", 4) == 0) {
            i += 4;
        }
        else {
            return -1;
        }
        if (i < 0) {
            return -1;
        }
    after_value:
        if (depth == 0) {
            return i;
        }
        i = skip_space(p, i, n);
        if (i >= n) {
            return -1;
        }
        if (p[i] == (open[depth - 1] == '{' ? '}' : ']')) {
            depth--;
            i++;
            goto after_value;
        }
        if (p[i] != ',') {
            return -1;
        }
        i = skip_space(p, i + 1, n);
        if (open[depth - 1] == '[') {
            continue;
        }
    member_key:
        if (i >= n || p[i] != '"') {
            return -1;
        }
        i = skip_string(p, i, n);
        if (i < 0) {
            return -1;
        }
        i = skip_space(p, i, n);
        if (i >= n || p[i] != ':') {
            return -1;
        }
        i = skip_space(p, i + 1, n);
    }
}

/* Adds a run's counts to a [records, bytes] list, and the list's id() to the set moved. */
static int
add_counts(PyObject *counter, Py_ssize_t records, Py_ssize_t size, PyObject *moved)
{
    PyObject *ident = PyLong_FromVoidPtr(counter);
    if (ident == NULL) {
        return -1;
    }
    int added = PySet_Add(moved, ident);
    Py_DECREF(ident);
    if (added < 0) {
        return -1;
    }
    Py_ssize_t add[2] = {records, size};
    for (Py_ssize_t i = 0; i < 2; i++) {
        PyObject *old = PyList_GET_ITEM(counter, i);
        PyObject *delta = PyLong_FromSsize_t(add[i]);
        if (delta == NULL) {
            return -1;
        }
        PyObject *sum = PyNumber_Add(old, delta);
        Py_DECREF(delta);
        if (sum == NULL) {
            return -1;
        }
        PyList_SET_ITEM(counter, i, sum); /* steals sum */
        Py_DECREF(old);
    }
    return 0;
}

static PyObject *
scan_records(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end, max_bytes;
    PyObject *heads, *moved;
    if (!PyArg_ParseTuple(
            args, "y*nnO!nO!", &view, &start, &end, &PyDict_Type, &heads, &max_bytes, &PySet_Type, &moved
        )) {
        return NULL;
    }
    if (start < 0 || end > view.len || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan_records: start and end out of range");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t pos = start;
    /* The run being counted: its stream's name (in the buffer), counter and counts. */
    const unsigned char *name = NULL;
    Py_ssize_t name_len = 0, records = 0, size = 0;
    PyObject *counter = NULL; /* borrowed from heads, which the caller keeps alive */
    int failed = 0;
    if (max_bytes < 1) {
        max_bytes = 1; /* the same (no line is that short), and max_bytes - 1 cannot overflow */
    }

    while (pos < end) {
        /* One pass per line: the line's end is not looked for first; the JSON walk finds where the
         * message ends, and the newline must follow it directly. The walk may look at the bytes
         * up to the buffer's end or up to max_bytes - 1 into the line, whichever comes first: a
         * line whose newline is not before that is unfinished (the caller reads more) or too long
         * for the shortcut. As it never steps over a newline (nor does the name, checked here),
         * all it accepts is within this line, exactly as if the line had been cut out first.
         * Any line it does not take stops the scan at its first byte. */
        const unsigned char *line = data + pos;
        Py_ssize_t limit = end - pos < max_bytes - 1 ? end - pos : max_bytes - 1;
        if (limit < COMPACT_LEN + DATA_OBJECT_LEN || memcmp(line, COMPACT, COMPACT_LEN) != 0) {
            break;
        }
        Py_ssize_t at = COMPACT_LEN; /* then: the name's closing quote (if there is one) */
        while (at < limit && line[at] != '"' && line[at] != '\n') {
            at++;
        }
        Py_ssize_t head_len = at + DATA_OBJECT_LEN;
        if (head_len > limit || memcmp(line + at, DATA_OBJECT, DATA_OBJECT_LEN) != 0) {
            break;
        }
        Py_ssize_t newline = json_end_after_head(line, limit, head_len);
        if (newline < 0 || newline >= limit || line[newline] != '\n') {
            break;
        }
        Py_ssize_t length = newline + 1;
        Py_ssize_t this_len = at - COMPACT_LEN;
        if (counter == NULL || this_len != name_len || memcmp(line + COMPACT_LEN, name, name_len) != 0) {
            PyObject *key = PyBytes_FromStringAndSize((const char *)line, head_len);
            if (key == NULL) {
                failed = 1;
                break;
            }
            PyObject *found = PyDict_GetItemWithError(heads, key);
            Py_DECREF(key);
            if (found == NULL) {
                failed = PyErr_Occurred() != NULL;
                break; /* not a stream the shortcut may count */
            }
            if (!PyList_CheckExact(found) || PyList_GET_SIZE(found) < 2) {
                PyErr_SetString(PyExc_TypeError, "scan_records: a counter must be a list [records, bytes]");
                failed = 1;
                break;
            }
            if (counter != NULL && records > 0 && add_counts(counter, records, size, moved) < 0) {
                failed = 1;
                break;
            }
            counter = found;
            name = line + COMPACT_LEN;
            name_len = this_len;
            records = size = 0;
        }
        records += 1;
        size += length;
        pos += length;
    }
    if (!failed && counter != NULL && records > 0 && add_counts(counter, records, size, moved) < 0) {
        failed = 1;
    }
    PyBuffer_Release(&view);
    if (failed) {
        return NULL;
    }
    return PyLong_FromSsize_t(pos);
}

#if defined(__linux__)
/* tee(fd_in, fd_out, length) -> bytes duplicated: tee(2) with SPLICE_F_NONBLOCK, which Python's
 * os module lacks (it has splice). Copies no data: the pipe fd_out gets references to the pages
 * at the head of the pipe fd_in, which keeps them. Retries on EINTR; raises BlockingIOError when
 * fd_in is empty (or fd_out full) and OSError for anything else; 0 means fd_in has ended. */
static PyObject *
pipe_tee(PyObject *module, PyObject *args)
{
    int fd_in, fd_out;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "iin", &fd_in, &fd_out, &length)) {
        return NULL;
    }
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "tee: length must not be negative");
        return NULL;
    }
    for (;;) {
        ssize_t copied;
        Py_BEGIN_ALLOW_THREADS
        copied = tee(fd_in, fd_out, (size_t)length, SPLICE_F_NONBLOCK);
        Py_END_ALLOW_THREADS
        if (copied >= 0) {
            return PyLong_FromSsize_t((Py_ssize_t)copied);
        }
        if (errno != EINTR) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}
#endif

static PyMethodDef methods[] = {
    {"scan_records", scan_records, METH_VARARGS,
     "scan_records(buffer, start, end, heads, max_bytes, moved) -> stop: count the shortcut RECORD "
     "lines of buffer[start:end] up to the first other or unfinished line, at stop; the id() of "
     "each counter that moved is added to the set moved."},
#if defined(__linux__)
    {"tee", pipe_tee, METH_VARARGS,
     "tee(fd_in, fd_out, length) -> count: duplicate up to length bytes at the head of the pipe fd_in "
     "into the pipe fd_out without consuming them (tee(2), non-blocking)."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ferryman.workers._scan",
    "The record path's framing and counting in C (optional; record_path has the same in Python).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
#if defined(SCAN_HAS_AVX2)
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
