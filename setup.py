"""The compiled parts of iehub, three hot byte loops:

- the GBK/GB18030 transcoder of district files (connectors/files/transcode.py);
- the UTF-8 loops of the text normalisers halfwidth and trim (schemas/normalise.py);
- the record hash's MD5 per row (schemas/lineage.py).

Everything else is declared in pyproject.toml. The extensions are optional: where no C compiler is
at hand the install still succeeds and the same results come from Python's codec, numpy passes and
DuckDB, slower. test_transcode.py, test_utf8_kernels.py and test_record_hash_kernel.py (under
tests/unit) fail when they were not built.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("connectors.files._transcode", ["connectors/files/_transcode.c"], optional=True, extra_compile_args=["-O3"]),
    Extension("schemas._utf8", ["schemas/_utf8.c"], depends=["schemas/_string_column.h"], optional=True,
              extra_compile_args=["-O3"]),
    Extension("schemas._md5", ["schemas/_md5.c"], depends=["schemas/_string_column.h"], optional=True,
              extra_compile_args=["-O3", "-pthread"], extra_link_args=["-pthread"]),
])
