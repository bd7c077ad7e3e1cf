"""``--data-dir`` names the folder a command reads, even while a gateway of the same config
runs at the config's address on another folder: ``query`` and ``eval compare`` open the named
folder's store (here: none there, which they say) instead of asking that gateway."""

from __future__ import annotations

from click.testing import CliRunner

from gateway.cli import main
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401


def test_a_named_data_dir_is_read_not_the_running_gateways_store(tmp_path, tdb):
    base = "backends:\n  m: {type: mock}\nmodels:\n  echo: {targets: [{backend: m}]}\n"
    with serve(base + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool")) as gw:
        port = gw.url.rsplit(":", 1)[1].rstrip("/")
        # the same config, as a file naming the running gateway's address; the store embedded
        config = tmp_path / "gw.yaml"
        config.write_text(base + f"server: {{host: 127.0.0.1, port: {port}}}\n")
        other = tmp_path / "other"
        other.mkdir()
        through = CliRunner().invoke(main, ["query", "--config", str(config), "SELECT 1 AS one", "--format", "jsonl"])
        assert through.exit_code == 0 and '"one":1' in through.stdout, through.output  # no --data-dir: the gateway
        named = CliRunner().invoke(main, ["query", "--config", str(config), "--data-dir", str(other),
                                          "SELECT 1 AS one", "--format", "jsonl"])
        assert named.exit_code != 0 and f"no embedded store at {other}" in named.output, named.output
        compared = CliRunner().invoke(main, ["eval", "compare", "--config", str(config), "--data-dir", str(other),
                                             "some-run"])
        assert compared.exit_code != 0 and f"no embedded store at {other}" in compared.output, compared.output
