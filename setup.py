"""The compiled parts of iehub, two hot byte loops:

- the GBK/GB18030 transcoder of district files (connectors/files/transcode.py);
- the UTF-8 loops of the text normalisers halfwidth and trim (schemas/normalise.py).

Everything else is declared in pyproject.toml. Both extensions are optional: where no C compiler is
at hand the install still succeeds and the same results come from Python's codec and numpy passes,
several times slower. tests/unit/connectors/files/test_transcode.py and
tests/unit/schemas/test_utf8_kernels.py fail when they were not built.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("connectors.files._transcode", ["connectors/files/_transcode.c"], optional=True, extra_compile_args=["-O3"]),
    Extension("schemas._utf8", ["schemas/_utf8.c"], optional=True, extra_compile_args=["-O3"]),
])
