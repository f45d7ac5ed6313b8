"""The ABI test must fail on every kind of break, not only on a removed symbol: each edit
below, made to a copy of the reference abi/libattnsink.abi, is compared with the reference the
way tests/test_abi.sh compares a build (abidiff --no-added-syms, status 0 required), and must
be refused; the unedited copy must pass.

    test_abi_guard.py SOURCE_ROOT
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def decl_block(xml, symbol):
    """(start, end) of the function-decl bound to an ELF symbol."""
    m = re.search(r"<function-decl [^>]*elf-symbol-id='%s(@@[^']*)?'>.*?</function-decl>\n"
                  % re.escape(symbol), xml, re.S)
    assert m, "no function-decl for %s in the reference" % symbol
    return m.start(), m.end()


def type_id(xml, name):
    m = re.search(r"<type-decl name='%s' [^>]*id='(type-id-\d+)'" % re.escape(name), xml)
    assert m, "no type %s in the reference" % name
    return m.group(1)


def remove_function(xml):
    a, b = decl_block(xml, "asink_attn_spec")
    xml = xml[:a] + xml[b:]
    return re.sub(r"\s*<elf-symbol name='asink_attn_spec' [^>]*/>", "", xml)


def change_parameter(xml):
    a, b = decl_block(xml, "asink_attn_forward")
    block = re.sub(r"(<parameter type-id=')[^']*(' name='B')", r"\g<1>%s\2" % type_id(xml, "long int"),
                   xml[a:b])
    return xml[:a] + block + xml[b:]


def change_return(xml):
    a, b = decl_block(xml, "asink_attn_key_count")
    block = re.sub(r"<return type-id='[^']*'/>", "<return type-id='%s'/>" % type_id(xml, "float"), xml[a:b])
    return xml[:a] + block + xml[b:]


def change_enum(xml):
    return xml.replace("<enumerator name='ASINK_ERR_IO' value='-6'/>",
                       "<enumerator name='ASINK_ERR_IO' value='-9'/>")


def abidiff(ref, new):
    return subprocess.run(["abidiff", "--no-added-syms", ref, new], capture_output=True, text=True).returncode


def main():
    if not shutil.which("abidiff"):
        print("abidiff not installed (Debian: abigail-tools): skipped")
        return 77
    ref = os.path.join(sys.argv[1], "abi", "libattnsink.abi")
    xml = open(ref).read()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        same = os.path.join(tmp, "same.abi")
        open(same, "w").write(xml)
        rc = abidiff(ref, same)
        print("unchanged copy: abidiff status %d (%s)" % (rc, "pass" if rc == 0 else "FAIL"))
        failed += rc != 0
        for edit in (remove_function, change_parameter, change_return, change_enum):
            edited = edit(xml)
            assert edited != xml, edit.__name__
            path = os.path.join(tmp, edit.__name__ + ".abi")
            open(path, "w").write(edited)
            rc = abidiff(ref, path)
            ok = rc != 0
            print("%s: abidiff status %d (%s)" % (edit.__name__, rc, "refused" if ok else "NOT REFUSED"))
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
