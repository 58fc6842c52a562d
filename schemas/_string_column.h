/* An Arrow string column as the C loops under schemas/ take it: its value bytes and its int32
 * offsets, rows + 1 of them, rebased to 0 (normalise._utf8_buffers). Shared by _utf8.c and _md5.c,
 * which read values between offsets and must never read outside the bytes they were given. */
#ifndef IEHUB_STRING_COLUMN_H
#define IEHUB_STRING_COLUMN_H

#include <Python.h>
#include <stdint.h>

/* NULL when the offsets are whole int32s that stay inside the values and never decrease (and then
 * *rows is set); else what is wrong with them. */
static const char *string_column_problem(const Py_buffer *values, const Py_buffer *offsets, Py_ssize_t *rows) {
    if (offsets->len < (Py_ssize_t)sizeof(int32_t) || offsets->len % sizeof(int32_t))
        return "offsets must be int32, one more than the rows";
    const int32_t *off = offsets->buf;
    Py_ssize_t n = offsets->len / (Py_ssize_t)sizeof(int32_t) - 1;
    if (off[0] < 0 || off[n] > values->len)
        return "offsets point outside the values";
    for (Py_ssize_t i = 0; i < n; i++)
        if (off[i + 1] < off[i])
            return "offsets must not decrease";
    *rows = n;
    return NULL;
}

#endif
