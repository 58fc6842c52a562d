"""The one compiled part of iehub: the GBK/GB18030 transcoder of district files (connectors/files/transcode.py).

Everything else is declared in pyproject.toml. The extension is optional: where no C compiler is at
hand the install still succeeds and district files are decoded by Python's codec alone, as before
(the same text, ~5x slower). tests/unit/connectors/files/test_transcode.py fails when it was not built.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("connectors.files._transcode", ["connectors/files/_transcode.c"], optional=True,
                             extra_compile_args=["-O3"])])
