"""quality: the gate's rules (GX suites built from the schemas), its engines, results and Data Docs.

May import ``schemas`` only; the pipeline (``iehub``) calls it. Great Expectations runs with its
analytics off everywhere the hub runs it: the switch is set here, before any module of this
package can import GX (GX reads it at import and when a context is made).
"""
import os

os.environ["GX_ANALYTICS_ENABLED"] = "False"  # no usage events leave the hub, whatever the caller's environment
