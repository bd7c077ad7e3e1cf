"""A config file held for an edit (``gateway.cli.file_edit``): a symlink's target is edited (the
link stays a link), the BOM, CRLF line endings and a missing final newline stay as they were,
and a target whose folder cannot be written is refused before anything is read."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys

import pytest

from gateway.cli.file_edit import FileEditError, held
from gateway.cli.yaml_edit import apply


def test_a_symlink_keeps_pointing_at_its_edited_target(tmp_path):
    # A Kubernetes ConfigMap mount: gateway.yaml -> ..data/gateway.yaml, ..data -> ..2026_v1/
    (tmp_path / "..2026_v1").mkdir()
    target = tmp_path / "..2026_v1" / "gateway.yaml"
    target.write_text("version: 1\n")
    (tmp_path / "..data").symlink_to("..2026_v1")
    link = tmp_path / "gateway.yaml"
    link.symlink_to("..data/gateway.yaml")
    with held(link) as f:
        assert f.path == target
        f.write(apply(f.text, [([], "version", 2)]))
    assert link.is_symlink() and os.readlink(link) == "..data/gateway.yaml"
    assert target.read_text() == "version: 2\n"
    assert sorted(p.name for p in (tmp_path / "..2026_v1").iterdir()) == ["gateway.yaml"]  # no temp left


def test_bom_crlf_and_no_final_newline_are_kept(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(codecs.BOM_UTF8 + "# é\r\nlabels: {production: 1}\r\nversion: 1".encode())
    with held(path) as f:
        assert f.text == "# é\nlabels: {production: 1}\nversion: 1"
        f.write(apply(f.text, [(["labels"], "production", 2), ([], "previous", {"production": [1]})]))
    assert path.read_bytes() == codecs.BOM_UTF8 + (
        "# é\r\nlabels: {production: 2}\r\nversion: 1\r\nprevious: {production: [1]}").encode()


def test_mixed_line_endings_are_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"a: 1\r\nb: 2\n")
    with pytest.raises(FileEditError, match="mixed line endings"), held(path):
        pass


def test_a_read_only_folder_is_refused_and_the_file_left_alone(tmp_path):
    folder = tmp_path / "mounted"
    folder.mkdir()
    (folder / "gateway.yaml").write_text("version: 1\n")
    link = tmp_path / "gateway.yaml"
    link.symlink_to(folder / "gateway.yaml")
    code = ("import sys, pathlib\nfrom gateway.cli.file_edit import held, FileEditError\n"
            "try:\n    with held(pathlib.Path(sys.argv[1])) as f: f.write('version: 2\\n')\n"
            "except FileEditError as exc: sys.exit(str(exc))\n")
    run = [sys.executable, "-c", code, str(link)]
    if os.geteuid() == 0:  # root writes anywhere: mount the folder read-only, as a ConfigMap is
        script = f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" && exec "$@"'
        run = ["unshare", "--mount", "sh", "-c", script, "sh", *run]
    else:
        folder.chmod(0o555)
    out = subprocess.run(run, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    folder.chmod(0o755)
    assert out.returncode == 1, out
    assert f"its folder {folder} is not writable (the link {link} points there)" in out.stderr
    assert (folder / "gateway.yaml").read_text() == "version: 1\n" and link.is_symlink()
