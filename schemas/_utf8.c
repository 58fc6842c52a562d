/* Per-character work over an Arrow string column's UTF-8 bytes, for schemas/normalise.py.
 *
 * What it owns: two byte loops that numpy could only do in a dozen passes over the whole column
 * (finding candidate bytes, confirming them, shifting offsets). It knows UTF-8's structure and
 * nothing of which characters matter: the caller passes a table per BMP code point, built from the
 * same Python rule (to_halfwidth) or from Arrow's own answer (the trims), so the result is theirs.
 * Values are read row by row between their offsets; the loops run without the GIL.
 *
 * halfwidth(values, offsets, table) -> None | (offsets: bytes, values: bytes)
 *   Every three-byte character whose table entry is not 0 becomes that one ASCII byte. None when
 *   no value holds one (the caller keeps its array). offsets: int32, rows + 1, rebased to 0.
 * ends_in(values, offsets, table) -> bytes
 *   The rows (int64, ascending) whose first or last character has a table entry other than 0.
 *   Characters beyond the BMP never do: the caller proves no such character is in its set.
 *
 *   table: 65536 bytes, one per BMP code point.
 * contains_any(values, offsets, needles) -> bytes
 *   The rows (int64, ascending) whose bytes hold one of the needles (a sequence of non-empty byte
 *   strings, at most 256) inside the value: one pass over the column, a lookup per byte, the
 *   needles compared only where their first byte is (the quality checks' prefilters, which
 *   numpy did in a pass per needle byte plus a gather at every candidate: 0.28 s for 1M titles).
 * shapes(values, offsets, shape) -> bytes
 *   One byte per row, 1 where the value has the shape, else 0: the five regular expressions
 *   normalise.py screens text with before a vectorised cast (SHAPES there names them), each
 *   decided in one pass over the value's bytes instead of RE2's 0.1 s per million values. The
 *   tests hold each to Arrow's match_substring_regex on the patterns themselves.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_string_column.h"

#define BMP 65536

typedef struct {
    Py_buffer values, offsets, table;
    const uint8_t *v;
    const int32_t *off;
    const uint8_t *map;
    Py_ssize_t rows;
} Column;

static void release(Column *c) {
    PyBuffer_Release(&c->values);
    PyBuffer_Release(&c->offsets);
    PyBuffer_Release(&c->table);
}

/* Parse (values, offsets, table) and check the offsets stay inside the values, ascending. */
static int column_from_args(PyObject *args, Column *c) {
    if (!PyArg_ParseTuple(args, "y*y*y*", &c->values, &c->offsets, &c->table))
        return 0;
    const char *problem = c->table.len != BMP ? "table must hold one byte per BMP code point (65536)"
                                               : string_column_problem(&c->values, &c->offsets, &c->rows);
    c->v = c->values.buf;
    c->off = c->offsets.buf;
    c->map = c->table.buf;
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        release(c);
        return 0;
    }
    return 1;
}

/* The code point of the three-byte character at p (lead 0xE0-0xEF), or -1 when it is cut by end. */
static inline int32_t three_byte(const uint8_t *p, const uint8_t *end) {
    if (end - p < 3)
        return -1;
    return ((int32_t)(p[0] & 0x0F) << 12) | ((int32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
}

/* Lead bytes of the three-byte characters the table maps (at most 16: 0xE0-0xEF), so that the
 * loops skip every other byte with one lookup: only EF and E3 for the full-width forms. */
static void mapped_leads(const Column *c, uint8_t leads[256]) {
    memset(leads, 0, 256);
    for (int32_t cp = 0x800; cp < BMP; cp++)
        if (c->map[cp])
            leads[0xE0 | (cp >> 12)] = 1;
}

/* The replacement of the character starting at p (a mapped lead), or 0. */
static inline uint8_t replaced(const Column *c, const uint8_t *p, const uint8_t *end) {
    int32_t cp = three_byte(p, end);
    return cp < 0 ? 0 : c->map[cp];
}

static PyObject *halfwidth(PyObject *self, PyObject *args) {
    Column c;
    if (!column_from_args(args, &c))
        return NULL;
    PyObject *result = NULL;
    const uint8_t *first = c.v + c.off[0], *last = c.v + c.off[c.rows];
    uint8_t leads[256];
    int found = 0;
    Py_BEGIN_ALLOW_THREADS
    mapped_leads(&c, leads);
    /* rows never split a character, so the first hit can be looked for over the whole span */
    for (const uint8_t *p = first; p < last && !found; p++)
        found = leads[*p] && replaced(&c, p, last) != 0;
    Py_END_ALLOW_THREADS
    if (!found) {
        release(&c);
        Py_RETURN_NONE;
    }
    PyObject *out_values = PyBytes_FromStringAndSize(NULL, last - first);
    PyObject *out_offsets = PyBytes_FromStringAndSize(NULL, c.offsets.len);
    if (out_values && out_offsets) {
        uint8_t *w = (uint8_t *)PyBytes_AS_STRING(out_values), *start = w;
        int32_t *o = (int32_t *)PyBytes_AS_STRING(out_offsets);
        Py_BEGIN_ALLOW_THREADS
        o[0] = 0;
        for (Py_ssize_t i = 0; i < c.rows; i++) {
            const uint8_t *p = c.v + c.off[i], *end = c.v + c.off[i + 1];
            while (p < end) {
                const uint8_t *q = p;
                while (q < end && !leads[*q])
                    q++;
                memcpy(w, p, (size_t)(q - p)); /* the unmapped run, whole */
                w += q - p;
                p = q;
                if (p == end)
                    break;
                uint8_t ascii = replaced(&c, p, end);
                if (ascii) {
                    *w++ = ascii;
                    p += 3;
                } else {
                    *w++ = *p++;
                }
            }
            o[i + 1] = (int32_t)(w - start);
        }
        Py_END_ALLOW_THREADS
        if (_PyBytes_Resize(&out_values, w - start) == 0)
            result = Py_BuildValue("(OO)", out_offsets, out_values);
    }
    Py_XDECREF(out_values);
    Py_XDECREF(out_offsets);
    release(&c);
    return result;
}

/* Whether the character starting at p, within [p, end), has a table entry. */
static inline int listed(const Column *c, const uint8_t *p, const uint8_t *end) {
    uint8_t b = *p;
    if (b < 0x80)
        return c->map[b] != 0;
    if ((b & 0xE0) == 0xC0)
        return end - p >= 2 && c->map[((b & 0x1F) << 6) | (p[1] & 0x3F)] != 0;
    if ((b & 0xF0) == 0xE0) {
        int32_t cp = three_byte(p, end);
        return cp >= 0 && c->map[cp] != 0;
    }
    return 0; /* four bytes: beyond the BMP */
}

static PyObject *ends_in(PyObject *self, PyObject *args) {
    Column c;
    if (!column_from_args(args, &c))
        return NULL;
    PyObject *result = PyBytes_FromStringAndSize(NULL, c.rows * (Py_ssize_t)sizeof(int64_t));
    if (result) {
        int64_t *rows = (int64_t *)PyBytes_AS_STRING(result), *r = rows;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < c.rows; i++) {
            const uint8_t *p = c.v + c.off[i], *end = c.v + c.off[i + 1];
            if (p == end)
                continue;
            const uint8_t *tail = end - 1;
            while (tail > p && (*tail & 0xC0) == 0x80 && end - tail < 4)
                tail--;
            if (listed(&c, p, end) || listed(&c, tail, end))
                *r++ = i;
        }
        Py_END_ALLOW_THREADS
        if (_PyBytes_Resize(&result, (r - rows) * (Py_ssize_t)sizeof(int64_t)) != 0)
            result = NULL;
    }
    release(&c);
    return result;
}

static PyObject *contains_any(PyObject *self, PyObject *args) {
    Py_buffer values, offsets;
    PyObject *needles;
    if (!PyArg_ParseTuple(args, "y*y*O", &values, &offsets, &needles))
        return NULL;
    PyObject *result = NULL, *seq = PySequence_Fast(needles, "needles must be a sequence of bytes");
    Py_ssize_t rows = 0, count = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
    const char *problem = NULL;
    const uint8_t *text[256];
    Py_ssize_t size[256];
    uint8_t first[256] = {0};
    if (!seq)
        goto done;
    if (count < 1 || count > 256)
        problem = "needles must hold 1 to 256 byte strings";
    for (Py_ssize_t i = 0; !problem && i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) == 0)
            problem = "every needle must be a non-empty bytes object";
        else {
            text[i] = (const uint8_t *)PyBytes_AS_STRING(item);
            size[i] = PyBytes_GET_SIZE(item);
            first[text[i][0]] = 1;
        }
    }
    if (!problem)
        problem = string_column_problem(&values, &offsets, &rows);
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, rows * (Py_ssize_t)sizeof(int64_t));
    if (result) {
        int64_t *out = (int64_t *)PyBytes_AS_STRING(result), *o = out;
        const uint8_t *v = values.buf;
        const int32_t *off = offsets.buf;
        Py_BEGIN_ALLOW_THREADS /* the needles are bytes objects held by seq: never freed meanwhile */
        for (Py_ssize_t r = 0; r < rows; r++) {
            const uint8_t *p = v + off[r], *end = v + off[r + 1];
            int hit = 0;
            for (; p < end && !hit; p++) {
                if (!first[*p])
                    continue;
                for (Py_ssize_t i = 0; i < count && !hit; i++)
                    hit = text[i][0] == *p && end - p >= size[i] && memcmp(p, text[i], (size_t)size[i]) == 0;
            }
            if (hit)
                *o++ = r;
        }
        Py_END_ALLOW_THREADS
        if (_PyBytes_Resize(&result, (o - out) * (Py_ssize_t)sizeof(int64_t)) != 0)
            result = NULL;
    }
done:
    Py_XDECREF(seq);
    PyBuffer_Release(&values);
    PyBuffer_Release(&offsets);
    return result;
}

/* The shapes (normalise.SHAPES: the patterns they stand for). */
enum { ISO_DATE = 1, ISO_LOCAL = 2, ISO_UTC = 3, PLAIN_NUMBER = 4, INT18 = 5 };

static inline int is_digit(uint8_t b) { return b >= '0' && b <= '9'; }

/* Digits from p[*i] on, at most `most`; returns how many, *i past them. */
static inline Py_ssize_t run_of_digits(const uint8_t *p, Py_ssize_t n, Py_ssize_t *i, Py_ssize_t most) {
    Py_ssize_t start = *i;
    while (*i < n && *i - start < most && is_digit(p[*i]))
        (*i)++;
    return *i - start;
}

/* (19|[2-9][0-9])[0-9]{2}-[0-9]{2}-[0-9]{2} at the start of p. */
static int iso_date_at(const uint8_t *p, Py_ssize_t n) {
    return n >= 10 && ((p[0] == '1' && p[1] == '9') || (p[0] >= '2' && p[0] <= '9' && is_digit(p[1]))) && is_digit(p[2]) &&
           is_digit(p[3]) && p[4] == '-' && is_digit(p[5]) && is_digit(p[6]) && p[7] == '-' && is_digit(p[8]) && is_digit(p[9]);
}

/* date[ T][0-9]{2}:[0-9]{2} at the start of p. */
static int iso_minute_at(const uint8_t *p, Py_ssize_t n) {
    return n >= 16 && iso_date_at(p, n) && (p[10] == ' ' || p[10] == 'T') && is_digit(p[11]) && is_digit(p[12]) &&
           p[13] == ':' && is_digit(p[14]) && is_digit(p[15]);
}

/* (\.[0-9]{1,6})? from p[*i]: 0 when a point is not followed by one to six digits. */
static int fraction(const uint8_t *p, Py_ssize_t n, Py_ssize_t *i) {
    if (*i < n && p[*i] == '.') {
        (*i)++;
        return run_of_digits(p, n, i, 6) > 0;
    }
    return 1;
}

static int has_shape(const uint8_t *p, Py_ssize_t n, int shape) {
    Py_ssize_t i = 0;
    switch (shape) {
    case ISO_DATE: /* ^date$ */
        return n == 10 && iso_date_at(p, n);
    case ISO_LOCAL: /* ^date[ T]hh:mm:ss(\.[0-9]{1,6})?$ */
        if (!(n >= 19 && iso_minute_at(p, n) && p[16] == ':' && is_digit(p[17]) && is_digit(p[18])))
            return 0;
        i = 19;
        return fraction(p, n, &i) && i == n;
    case ISO_UTC: /* ^date[ T]hh:mm(:ss(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$ */
        if (!iso_minute_at(p, n))
            return 0;
        i = 16;
        if (i < n && p[i] == ':') {
            i++;
            if (run_of_digits(p, n, &i, 2) != 2 || !fraction(p, n, &i))
                return 0;
        }
        if (i < n && p[i] == 'Z')
            i++;
        else if (i < n && (p[i] == '+' || p[i] == '-')) {
            i++;
            if (run_of_digits(p, n, &i, 2) != 2)
                return 0;
            if (i < n && p[i] == ':')
                i++;
            if (run_of_digits(p, n, &i, 2) != 2)
                return 0;
        }
        return i == n;
    case PLAIN_NUMBER: /* ^[+-]?[0-9]+(\.[0-9]+)?$ */
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (run_of_digits(p, n, &i, PY_SSIZE_T_MAX) == 0)
            return 0;
        if (i < n && p[i] == '.') {
            i++;
            if (run_of_digits(p, n, &i, PY_SSIZE_T_MAX) == 0)
                return 0;
        }
        return i == n;
    default: /* INT18: ^[+-]?[0-9]{1,18}$ */
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        return run_of_digits(p, n, &i, 18) > 0 && i == n;
    }
}

static PyObject *shapes(PyObject *self, PyObject *args) {
    Py_buffer values, offsets;
    int shape;
    if (!PyArg_ParseTuple(args, "y*y*i", &values, &offsets, &shape))
        return NULL;
    Py_ssize_t rows = 0;
    const char *problem = shape < ISO_DATE || shape > INT18 ? "shape must be one of the module's shape constants"
                                                             : string_column_problem(&values, &offsets, &rows);
    PyObject *result = NULL;
    if (problem)
        PyErr_SetString(PyExc_ValueError, problem);
    else if ((result = PyBytes_FromStringAndSize(NULL, rows))) {
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
        const uint8_t *v = values.buf;
        const int32_t *off = offsets.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < rows; r++)
            out[r] = (uint8_t)has_shape(v + off[r], off[r + 1] - off[r], shape);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"halfwidth", halfwidth, METH_VARARGS,
     "halfwidth(values, offsets, table) -> None | (offsets, values): three-byte characters to the ASCII byte the table gives"},
    {"ends_in", ends_in, METH_VARARGS,
     "ends_in(values, offsets, table) -> bytes: int64 rows whose first or last character the table lists"},
    {"contains_any", contains_any, METH_VARARGS,
     "contains_any(values, offsets, needles) -> bytes: int64 rows whose bytes hold one of the needles"},
    {"shapes", shapes, METH_VARARGS,
     "shapes(values, offsets, shape) -> bytes: one byte per row, 1 where the value has the shape"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_utf8", NULL, -1, methods};

PyMODINIT_FUNC PyInit__utf8(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "ISO_DATE", ISO_DATE) < 0 || PyModule_AddIntConstant(m, "ISO_LOCAL", ISO_LOCAL) < 0 ||
              PyModule_AddIntConstant(m, "ISO_UTC", ISO_UTC) < 0 ||
              PyModule_AddIntConstant(m, "PLAIN_NUMBER", PLAIN_NUMBER) < 0 || PyModule_AddIntConstant(m, "INT18", INT18) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
