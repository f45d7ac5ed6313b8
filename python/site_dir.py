"""Used by python/meson.build: print the site-packages directory to install the attnsink
package into, for install prefix argv[1] and meson's default argv[2] (absolute or relative
to the prefix): the first candidate that this interpreter searches (sys.path) under that
prefix, else meson's default."""
import os
import sys

prefix, default = sys.argv[1], sys.argv[2]
if not os.path.isabs(default):
    default = os.path.join(prefix, default)
ver = "python%d.%d" % sys.version_info[:2]
candidates = [default,
              os.path.join(prefix, "lib", ver, "dist-packages"),
              os.path.join(prefix, "lib", ver, "site-packages")]
path = {os.path.normpath(p) for p in sys.path if p}
for c in candidates:
    if os.path.normpath(c) in path:
        print(c)
        break
else:
    print(default)
