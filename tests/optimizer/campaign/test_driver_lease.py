"""One driver per campaign: the campaign lease is taken before the oracle is touched, a second
driver is refused with the holder's name, and a driver that loses its lease stops."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from optimizer.campaign.config_io import dump_toml
from optimizer.campaign.lease import DriverLease
from optimizer.campaign.service import open_storage, start_or_resume
from optimizer.cli import main
from optimizer.errors import CampaignStateError


def _campaign(url: str, make_config, prior: str, lab_url: str, name: str = "leased"):  # type: ignore[no-untyped-def]
    cfg = make_config(name, prior, lab_url, url)
    with open_storage(url, create=True) as st:
        start_or_resume(cfg, st, source="test")
    return cfg


def test_second_driver_refused_until_the_first_releases(db_url: str, make_config,
                                                         tiny_prior_path: str) -> None:
    _campaign(db_url, make_config, tiny_prior_path, "http://127.0.0.1:9")
    with open_storage(db_url, create=False) as st:
        with DriverLease(st, "leased", owner="host-a:1:aaaa"):
            with pytest.raises(CampaignStateError, match=r"being driven by host-a:1:aaaa until"):
                DriverLease(st, "leased", owner="host-b:2:bbbb").__enter__()
        with DriverLease(st, "leased", owner="host-b:2:bbbb") as second:
            assert st.campaign_lease("leased").owner == "host-b:2:bbbb" and not second.lost
        assert st.campaign_lease("leased") is None  # released on exit


def test_a_driver_that_cannot_renew_marks_its_lease_lost(db_url: str, make_config,
                                                         tiny_prior_path: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _campaign(db_url, make_config, tiny_prior_path, "http://127.0.0.1:9")
    with open_storage(db_url, create=False) as st:
        lease = DriverLease(st, "leased", ttl_s=0.6, owner="host-a:1:aaaa")
        with lease:
            # another driver took the campaign after this one stalled: renewals now fail
            monkeypatch.setattr(st, "heartbeat_campaign_lease", lambda *a, **k: False)
            monkeypatch.setattr(st, "acquire_campaign_lease", lambda *a, **k: None)
            deadline = time.monotonic() + 5
            while not lease.lost and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lease.lost


def test_run_refused_while_another_driver_holds_the_lease(ray_session: str, lab, tmp_path: Path,
                                                          make_config, tiny_prior_path: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    cfg = _campaign(url, make_config, tiny_prior_path, lab.url)
    path = tmp_path / "campaign.toml"
    path.write_text(dump_toml(cfg))
    with open_storage(url, create=False) as st:
        assert st.acquire_campaign_lease("leased", "other-host:42:cafe", 60.0) is not None
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "campaign 'leased' is being driven by other-host:42:cafe until" in err
    assert lab.stats()["requests"] == 0  # the oracle was never touched
    with open_storage(url, create=False) as st:
        assert st.query_counts("leased")["pending"] == 0 and not st.list_rounds("leased")


def test_lease_of_a_dead_driver_on_this_host_is_taken_over_at_once(db_url: str, make_config,
                                                                    tiny_prior_path: str) -> None:
    import socket
    import subprocess
    import sys

    _campaign(db_url, make_config, tiny_prior_path, "http://127.0.0.1:9")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open_storage(db_url, create=False) as st:
        st.acquire_campaign_lease("leased", f"{socket.gethostname()}:{dead}:dead", 600.0)
        with DriverLease(st, "leased") as lease:
            assert st.campaign_lease("leased").owner == lease.owner
        # a driver of another host is never taken over (its process cannot be checked)
        st.acquire_campaign_lease("leased", "elsewhere:1:live", 600.0)
        with pytest.raises(CampaignStateError, match="elsewhere:1:live"):
            DriverLease(st, "leased").__enter__()
