"""The GPU command stops at its own limit, writing what it measured; its DEVICES.md section is rewritten in place."""

from __future__ import annotations

import json
import time

from benchmarks import gpu
from benchmarks.gpu_report import BEGIN, END, write_devices_section


def test_the_gpu_command_stops_at_its_limit_and_writes_what_it_has(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "verdicts", lambda device, sizes: time.sleep(30))  # a first part that outlasts it
    start = time.perf_counter()
    record = gpu.run(device="cpu", quick=True, out=tmp_path, limit=0.3)
    assert time.perf_counter() - start < 10
    assert record["stopped_at_limit"] == "verdicts"
    written = json.loads((tmp_path / "results" / "gpu.json").read_text())
    assert written["machine"]["cpu_figures"] is True
    assert set(written["parts"]) == {"verdicts", "throughput", "paper_shape", "battery"}
    assert all("skipped" in part for part in written["parts"].values())
    devices = (tmp_path / "DEVICES.md").read_text()
    assert "No GPU has run this command yet" in devices and "Stopped at the 0 s limit in part `verdicts`" in devices


def test_the_devices_section_replaces_only_itself(tmp_path):
    path = tmp_path / "DEVICES.md"
    path.write_text(f"# Devices\n\nkept above\n\n{BEGIN}\nold figures\n{END}\n\nkept below\n")
    record = {"machine": {"cpu_figures": True, "cores": 2}, "quick": True, "limit_seconds": 1.0,
              "stopped_at_limit": None, "parts": {"battery": {"skipped": "a reason"}}}
    write_devices_section(path, record)
    text = path.read_text()
    assert "old figures" not in text and "kept above" in text and "kept below" in text
    assert text.count(BEGIN) == 1 and "- battery: a reason" in text
