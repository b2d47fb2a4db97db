"""gliorad serve's REST API with an in-process client (FastAPI's TestClient, the application's
lifespan: two real prediction processes) and the small test bundle of ``tests/test_bundle.py``.

Upload -> poll -> result equals ``gliorad predict`` on the same files and bundle (and the mask,
features, summary page and the viewer's volumes, the latter against an independent nibabel
reorientation); a ZIP of the NIfTI files and a ZIP of a DICOM study of the same images give the
same prediction; a given mask replaces the segmentation. Every bad input is a 4xx naming the
problem, with nothing left in the data folder; a problem only the prediction finds fails that
job, not the service. Queue limit and positions, the time limit, a crashed prediction process,
deleting a running job, the token, retention and a restart over the same data folder.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import signal
import stat
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from fastapi.testclient import TestClient

# the bundle is built by test_bundle.py's builder, DICOM series by test_dicom.py's writer
from test_bundle import SEQUENCES, build_bundle
from test_dicom import write_series
from typer.testing import CliRunner

from gliorad.bundle import load_model_bundle
from gliorad.serve.app import create_app
from gliorad.serve.settings import ServeSettings

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tests/conftest.py

CLINICAL = {"age": "45", "grade": "III", "histology": "astrocytoma"}
TOKEN = "a-test-token-of-some-length"


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return build_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def bundle(built):
    return load_model_bundle(built.bundle)


@pytest.fixture(scope="module")
def service(built, bundle, tmp_path_factory):
    data = tmp_path_factory.mktemp("serve-data")
    settings = ServeSettings(bundle=built.bundle, data=data, workers=2, threads=1,
                             max_upload_mb=2, max_unzipped_mb=8, max_files=200)
    app = create_app(settings, bundle=bundle)
    with TestClient(app) as client:
        yield SimpleNamespace(client=client, app=app, manager=app.state.manager, data=data,
                              settings=settings)


def _path(built, seq: str) -> Path:
    return built.cohort / built.held_out / f"{built.held_out}_{seq}.nii.gz"


def _files(built, seqs=SEQUENCES) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(s, (_path(built, s).name, _path(built, s).read_bytes(), "application/gzip"))
            for s in seqs]


def _wait(client, job_id: str, timeout: float = 180, until=("done", "failed")) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = client.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in until:
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {r.json()['status']} after {timeout} s")


def _submit(service, **kw) -> dict:
    r = service.client.post("/api/jobs", **kw)
    assert r.status_code == 202, r.text
    return r.json()


def _stable(result: dict) -> dict:
    """The prediction without what differs by design between two runs on copies of the same
    files: times, and the paths of the inputs and outputs."""
    out = {k: v for k, v in result.items() if k not in ("run", "files", "patient_dir")}
    out["inputs"] = {**result["inputs"], "sequences": {
        s: v["sha256"] for s, v in result["inputs"]["sequences"].items()}}
    return out


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory):
    """``gliorad predict`` (the command) on a folder holding exactly the uploaded files."""
    from gliorad.commands.predict import app

    tmp = tmp_path_factory.mktemp("reference")
    folder = tmp / built.held_out
    folder.mkdir()
    for s in SEQUENCES:
        shutil.copyfile(_path(built, s), folder / _path(built, s).name)
    args = [str(folder), "--bundle", str(built.bundle), "--out", str(tmp / "out")]
    for k, v in CLINICAL.items():
        args += ["--clinical", f"{k}={v}"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return SimpleNamespace(result=json.loads(r.stdout), out=tmp / "out")


def _left(service) -> tuple[list[str], set[str]]:
    return (sorted(os.listdir(service.manager.incoming)),
            set(os.listdir(service.manager.jobs_dir)))


# ------------------------------------------------------------------------------ happy paths
def test_upload_poll_result_equals_gliorad_predict(service, built, reference):
    job = _submit(service, files=_files(built), data={"clinical": json.dumps(CLINICAL)})
    assert job["status"] in ("queued", "running") and job["patient_id"] == built.held_out
    assert job["steps"] == ["queued", "segmentation", "features", "grading", "survival",
                            "writing", "viewer"]
    seen = {_wait(service.client, job["id"], until=("running", "done"))["status"]}
    done = _wait(service.client, job["id"])
    seen.add(done["status"])
    assert done["status"] == "done", done["error"]
    assert done["progress"] == 1.0 and done["step"] == "viewer" and done["expires"]
    base = f"/api/jobs/{job['id']}"
    assert done["links"]["result"] == f"{base}/result"

    res = service.client.get(f"{base}/result")
    assert res.status_code == 200 and res.headers["cache-control"] == "no-store"
    result = res.json()
    assert _stable(result) == _stable(reference.result)
    assert result["files"]["json"].startswith(str(service.data))

    # the mask and features are predict's files
    mask = service.client.get(f"{base}/mask")
    assert mask.headers["content-disposition"] == f'attachment; filename="{built.held_out}_mask.nii.gz"'
    served = sitk.ReadImage(_write(mask.content, service.data.parent / "m.nii.gz"))
    ref_mask = sitk.ReadImage(str(reference.out / "mask.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(served), sitk.GetArrayFromImage(ref_mask))
    feats = service.client.get(f"{base}/features")
    assert feats.text == (reference.out / "features.csv").read_text(encoding="utf-8")
    page = service.client.get(f"{base}/summary")
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert f"{result['grading']['probability_hgg']:.3f}" in page.text

    # the viewer: each sequence windowed to uint8 in LPS order; nibabel gives the reference
    meta = service.client.get(f"{base}/viewer").json()
    assert meta["sequences"] == SEQUENCES and meta["step"] == 1 and meta["labels"] == [1]
    for seq in SEQUENCES:
        vol = service.client.get(f"{base}/viewer/{seq}")
        assert vol.headers["content-encoding"] == "gzip"
        got = np.frombuffer(vol.content, np.uint8).reshape(meta["shape"])
        np.testing.assert_allclose(got, _nibabel_lps_u8(_path(built, seq)), atol=1)
    m = np.frombuffer(service.client.get(f"{base}/viewer/mask").content, np.uint8)
    assert int((m > 0).sum()) == result["mask"]["voxels"]
    r = service.client.get(f"{base}/viewer/../../job.json")
    assert r.status_code == 404
    r = service.client.get(f"{base}/viewer/flair")
    assert r.status_code == 404 and "no volume 'flair'; expected one of: t1, t1ce, t2, mask" in r.text


def _write(data: bytes, path: Path) -> str:
    path.write_bytes(data)
    return str(path)


def _nibabel_lps_u8(path: Path) -> np.ndarray:
    """An independent reference of the viewer's volume: nibabel's closest canonical (RAS)
    orientation flipped to LPS, as numpy (z, y, x), windowed at the 0.5/99.5th percentiles of
    the non-zero voxels."""
    import nibabel as nib

    ras = np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj).astype(np.float64)
    lps = ras[::-1, ::-1, :].transpose(2, 1, 0)
    lo, hi = np.percentile(lps[lps != 0], [0.5, 99.5])
    return np.rint(np.clip((lps - lo) * 255.0 / (hi - lo), 0, 255))


def test_zip_of_nifti_and_zip_of_dicom_give_the_same_prediction(service, built, reference,
                                                               tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for s in SEQUENCES:
            zf.write(_path(built, s), f"{built.held_out}/{_path(built, s).name}")
        zf.writestr(f"{built.held_out}/README.txt", "exported for the test")
    job = _submit(service, files={"study": ("patient.zip", buf.getvalue(), "application/zip")},
                  data={"clinical": "age=45,grade=III,histology=astrocytoma"})
    assert job["source"] == "zip-nifti" and job["patient_id"] == built.held_out
    assert _wait(service.client, job["id"])["status"] == "done"
    result = service.client.get(f"/api/jobs/{job['id']}/result").json()
    assert _stable(result) == _stable(reference.result)

    # the same three volumes as a DICOM export (one series per sequence, tags as a scanner's)
    study = tmp_path / "dicom"
    for number, (seq, desc, contrast) in enumerate(
            (("t1", "AX T1", None), ("t1ce", "AX T1 POST GAD", "DOTAREM"),
             ("t2", "AX T2 FSE", None)), start=3):
        write_series(sitk.ReadImage(str(_path(built, seq))), study / f"S{number}", number, desc,
                     contrast=contrast)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(study.rglob("*")):
            zf.write(f, f.relative_to(tmp_path).as_posix())
    job = _submit(service, files={"study": ("dicom.zip", buf.getvalue(), "application/zip")},
                  data={"clinical": json.dumps(CLINICAL), "patient_id": "DCM01"})
    assert job["source"] == "zip-dicom" and job["patient_id"] == "DCM01"
    assert job["steps"][:3] == ["queued", "converting", "segmentation"]
    done = _wait(service.client, job["id"])
    assert done["status"] == "done", done["error"]
    dcm = service.client.get(f"/api/jobs/{job['id']}/result").json()
    assert dcm["patient_id"] == "DCM01"
    assert dcm["grading"]["probability_hgg"] == pytest.approx(
        reference.result["grading"]["probability_hgg"], rel=1e-9)
    assert dcm["survival"]["nomograms"]["integrated"]["survival"] == pytest.approx(
        reference.result["survival"]["nomograms"]["integrated"]["survival"], rel=1e-9)


def test_a_given_mask_replaces_the_segmentation(service, built):
    seg = built.cohort / built.held_out / f"{built.held_out}_seg.nii.gz"
    job = _submit(service, files=[*_files(built), ("mask", (seg.name, seg.read_bytes(), "x"))],
                  data={"patient_id": "P2"})
    assert "segmentation" not in job["steps"] and job["patient_id"] == "P2"
    assert _wait(service.client, job["id"])["status"] == "done"
    result = service.client.get(f"/api/jobs/{job['id']}/result").json()
    manual = int((sitk.GetArrayFromImage(sitk.ReadImage(str(seg))) > 0).sum())
    assert result["mask"]["source"] == "given" and result["mask"]["voxels"] == manual
    assert result["patient_id"] == "P2"
    # no clinical values: the nomograms say what is missing, the rest is there
    assert not result["survival"]["nomograms"]["integrated"]["computed"]
    assert 0 <= result["grading"]["probability_hgg"] <= 1


def test_info_and_docs(service, bundle):
    info = service.client.get("/api/info").json()
    assert info["sequences"] == SEQUENCES and info["upload_fields"] == SEQUENCES
    assert [f["name"] for f in info["clinical"]] == ["age", "grade", "histology"]
    assert info["clinical"][1] == {"name": "grade", "kind": "choice", "choices": ["II", "III"],
                                   "nomograms": ["integrated", "clinical"]}
    assert info["bundle"]["manifest_sha256"] == bundle.manifest["manifest_sha256"]
    assert info["limits"]["max_upload_mb"] == 2 and info["token_required"] is False
    page = service.client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for path in ("/static/app.js", "/static/viewer.js", "/static/style.css"):
        text = service.client.get(path).text
        assert "http://" not in text and "https://" not in text, path
    docs = service.client.get("/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert service.client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = service.client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/result",
            "/api/jobs/{job_id}/mask", "/api/jobs/{job_id}/summary"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


# ------------------------------------------------------------------------------ bad input
def _zip_bytes(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "../../../etc/passwd")
    return buf.getvalue()


def _bad_cases(built, tmp_path) -> list[tuple[str, dict, int, str]]:
    pid = built.held_out
    nifti = {f"{pid}/{_path(built, s).name}": _path(built, s).read_bytes() for s in SEQUENCES}
    text = gzip.compress(b"not an image, just text\n" * 50)
    second = {k.replace(pid, "OTHER_0001"): v for k, v in nifti.items()}
    study = tmp_path / "dicom"
    write_series(sitk.ReadImage(str(_path(built, "t1"))), study / "S3", 3, "AX T1")
    write_series(sitk.ReadImage(str(_path(built, "t1ce"))), study / "S7", 7, "AX T1 POST GAD",
                 contrast="DOTAREM")
    dicom = {f.relative_to(tmp_path).as_posix(): f.read_bytes() for f in sorted(study.rglob("*"))
             if f.is_file()}
    zipped = lambda m, name="study.zip", **kw: {
        "files": {"study": (name, _zip_bytes(m, **kw), "application/zip")}}
    return [
        ("no images", {"data": {"clinical": "{}"}}, 422,
         (r"^no images: send the sequences this bundle's models need \(t1, t1ce, t2\) as NIfTI "
         r"files in form fields named after them, or one ZIP in 'study'$")),
        ("missing sequence", {"files": _files(built, ["t1", "t1ce"])}, 422,
         (r"^no t2 image: this bundle's models need t1, t1ce, t2; send each as a NIfTI file in "
         r"the form field named after it \(or one ZIP in 'study'\)$")),
        ("non-image .nii.gz", {"files": [*_files(built, ["t1", "t1ce"]),
                                         ("t2", (f"{pid}_t2.nii.gz", text, "application/gzip"))]},
         422, (rf"^t2 \({pid}_t2\.nii\.gz\): not a NIfTI image \(.*\); expected a NIfTI-1 or "
              r"NIfTI-2 image file$")),
        ("not a NIfTI name", {"files": [*_files(built, ["t1", "t1ce"]),
                                        ("t2", ("t2.txt", b"x", "text/plain"))]},
         422, r"^t2: file 't2\.txt' is not a NIfTI file name; expected \.nii or \.nii\.gz$"),
        ("files and a ZIP", {"files": [*_files(built), ("study", ("s.zip", b"PK", "x"))]}, 422,
         r"^send either the sequences \(form fields t1, t1ce, t2\) or one ZIP in 'study', not both$"),
        ("../ in a ZIP", zipped({**nifti, "../../escape.nii.gz": b"x"}), 422,
         (r"^study \(study\.zip\): member '\.\./\.\./escape\.nii\.gz' has a path outside the "
         r"upload folder")),
        ("symlink in a ZIP", zipped(nifti, links=(f"{pid}/{pid}_flair.nii.gz",)), 422,
         rf"^study \(study\.zip\): member '{pid}/{pid}_flair\.nii\.gz' is a symbolic link"),
        ("ZIP bomb", zipped({f"{pid}/{pid}_t1.nii": b"\0" * (40 << 20)}, "bomb.zip"), 413,
         r"^study \(bomb\.zip\): unpacks to 40\.0 MB; the limit is 8\.0 MB \(a ZIP bomb"),
        ("not a ZIP", {"files": {"study": ("s.zip", b"not a zip at all", "application/zip")}},
         422, r"^study \(s\.zip\): not a ZIP archive"),
        ("non-image in a ZIP", zipped({**nifti, f"{pid}/{pid}_t2.nii.gz": text}), 422,
         rf"^{pid}/{pid}_t2\.nii\.gz: not a NIfTI image"),
        ("missing sequence in a ZIP",
         zipped({k: v for k, v in nifti.items() if not k.endswith("_t2.nii.gz")}), 422,
         (rf"^{pid}: patient {pid} has no t2 image \(expected {pid}_t2\.nii\.gz\); the bundle's "
         r"models need t1, t1ce, t2")),
        ("two patients in a ZIP", zipped({**nifti, **second}), 422,
         rf"^study: holds 2 patients \(OTHER_0001, {pid}\); give the folder of one patient"),
        ("DICOM study without T2", zipped(dicom), 422,
         (r"dicom: missing t2: no DICOM series identified as t2 \(found: series 3 'AX T1' -> t1; "
         r"series 7 'AX T1 POST GAD' -> t1ce\)")),
        ("clinical not JSON", {"files": _files(built), "data": {"clinical": "{age: 45}"}}, 422,
         (r"^clinical: not valid JSON \(Expecting property name enclosed in double quotes, "
         r"character 1\)")),
        ("clinical not KEY=VALUE", {"files": _files(built), "data": {"clinical": "age45"}}, 422,
         r"^clinical: --clinical 'age45' is not valid; expected KEY=VALUE"),
        ("patient id with a path", {"files": _files(built), "data": {"patient_id": "../x"}}, 422,
         r"^patient_id '\.\./x': expected 1-64 letters, digits, '\.', '_' or '-'"),
        ("oversized upload", {"files": {"t1": ("big.nii.gz", b"\0" * (3 << 20), "x")}}, 413,
         r"^the upload is larger than this service's limit of 2 MB \(--max-upload-mb\)$"),
    ]


def test_bad_inputs_are_4xx_naming_the_problem_and_leave_nothing(service, built, tmp_path):
    before = _left(service)
    assert before[0] == []
    for name, kwargs, status, pattern in _bad_cases(built, tmp_path):
        r = service.client.post("/api/jobs", **kwargs)
        assert r.status_code == status, (name, r.status_code, r.text)
        body = r.json()
        assert any(re.search(pattern, p) for p in body["problems"]), (name, body)
        assert body["detail"] == "\n".join(body["problems"])
        assert _left(service) == before, name
    # a body over the limit without Content-Length (chunked) is stopped while it is read
    chunks = (b"\0" * (1 << 20) for _ in range(4))
    r = service.client.post("/api/jobs", content=chunks,
                            headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "larger than this service's limit of 2 MB" in r.json()["detail"]
    assert _left(service) == before
    r = service.client.get("/api/jobs/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404 and "not found: unknown, deleted, or expired (results are kept " \
                                       "24 hours)" in r.json()["detail"]
    assert service.client.get("/api/jobs/..%2F..%2Fetc").status_code == 404


def test_a_problem_only_the_prediction_finds_fails_that_job_only(service, built, tmp_path):
    """T2 on another grid passes the upload checks (each file is an image, each sequence is
    there) but predict refuses it: the job fails naming the file, as the uploader sent it; the
    service goes on."""
    img = sitk.ReadImage(str(_path(built, "t2")))
    img.SetSpacing((3.0, 3.0, 3.0))
    path = tmp_path / f"{built.held_out}_t2.nii.gz"
    sitk.WriteImage(img, str(path))
    files = [*_files(built, ["t1", "t1ce"]), ("t2", (path.name, path.read_bytes(), "x"))]
    job = _submit(service, files=files)
    failed = _wait(service.client, job["id"])
    assert failed["status"] == "failed" and failed["error"]["kind"] == "input"
    problem = failed["error"]["problems"][0]
    pid = built.held_out
    assert problem.startswith(f"{pid}/{pid}_t2.nii.gz: grid differs from {pid}_t1.nii.gz "
                              "(spacing (3, 3, 3) differs from (4, 4, 4))")
    assert str(service.data) not in problem
    r = service.client.get(f"/api/jobs/{job['id']}/result")
    assert r.status_code == 409 and r.json()["detail"].startswith(
        f"job {job['id']} is failed: {pid}/{pid}_t2.nii.gz: grid differs")


# --------------------------------------------------------------------- queue and processes
def _workers(service) -> list:
    return [s for s in service.manager._slots]


def _signal_workers(service, sig) -> None:
    for slot in _workers(service):
        if slot.proc is not None and slot.proc.is_alive():
            os.kill(slot.proc.pid, sig)


def _warm(service, timeout: float = 300) -> None:
    """Wait until every slot's prediction process has its bundle loaded (and is idle)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(s.ready and s.job is None for s in _workers(service)):
            return
        time.sleep(0.1)
    raise AssertionError("the prediction processes did not start")


def test_queue_positions_limit_and_running_jobs(service, built):
    _warm(service)
    _signal_workers(service, signal.SIGSTOP)  # both processes hold their job until SIGCONT
    m = service.manager
    m.settings = replace(service.settings, max_queue=1)
    try:
        a = _submit(service, files=_files(built))
        b = _submit(service, files=_files(built))
        _wait(service.client, a["id"], until=("running",))
        _wait(service.client, b["id"], until=("running",))
        c = _submit(service, files=_files(built))
        assert c["status"] == "queued" and c["queue_position"] == 1
        before = _left(service)
        r = service.client.post("/api/jobs", files=_files(built))
        assert r.status_code == 503 and r.headers["retry-after"] == "60"
        assert r.json()["detail"] == ("the service is busy: 1 jobs are waiting, the most this "
                                      "service queues (--max-queue 1); try again later")
        assert _left(service) == before
        assert service.client.get("/api/info").json()["jobs"]["running"] == 2
    finally:
        m.settings = service.settings
        _signal_workers(service, signal.SIGCONT)
    for job in (a, b, c):
        assert _wait(service.client, job["id"])["status"] == "done"


def test_delete_a_running_job_a_crash_and_the_time_limit(service, built):
    """Deleting a running job kills its process; a process that dies fails its job only; a job
    past the time limit is stopped; after each the service starts a new process and goes on."""
    _warm(service)
    _signal_workers(service, signal.SIGSTOP)
    m = service.manager
    try:
        a = _submit(service, files=_files(built))
        b = _submit(service, files=_files(built))
        _wait(service.client, a["id"], until=("running",))
        _wait(service.client, b["id"], until=("running",))
        slots = {s.job.id: s for s in _workers(service) if s.job is not None}
        pid_a, pid_b = slots[a["id"]].proc.pid, slots[b["id"]].proc.pid
        assert service.client.delete(f"/api/jobs/{a['id']}").status_code == 204
        assert not (m.jobs_dir / a["id"]).exists()
        assert service.client.get(f"/api/jobs/{a['id']}").status_code == 404
        os.kill(pid_b, signal.SIGKILL)
        failed = _wait(service.client, b["id"])
        assert failed["status"] == "failed" and failed["error"] == {
            "kind": "internal", "problems": [("the prediction process ended unexpectedly (exit "
                                             "code -9); the service starts a new one")]}
        for pid in (pid_a, pid_b):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        _signal_workers(service, signal.SIGCONT)
    m.settings = replace(service.settings, time_limit_s=0.05)  # predict takes about 0.4 s
    try:
        c = _submit(service, files=_files(built))
        late = _wait(service.client, c["id"])
    finally:
        m.settings = service.settings
    assert late["status"] == "failed" and late["error"] == {
        "kind": "time", "problems": [("the job ran longer than the time limit of 0.05 s "
                                     "(--time-limit) and was stopped")]}
    d = _submit(service, files=_files(built))
    assert _wait(service.client, d["id"])["status"] == "done"


# ------------------------------------------------------------------------------ token, data
def test_token_required(built, bundle, tmp_path):
    settings = ServeSettings(bundle=built.bundle, data=tmp_path / "data", token=TOKEN)
    app = create_app(settings, bundle=bundle)
    client = TestClient(app)  # no lifespan: no prediction process is needed here
    r = client.get("/api/info")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"].startswith("this service requires a token: send the header "
                                         "'Authorization: Bearer <token>'")
    r = client.post("/api/jobs", files=_files(built))
    assert r.status_code == 401
    assert os.listdir(tmp_path / "data" / "incoming") == os.listdir(tmp_path / "data" / "jobs") == []
    r = client.get("/api/info", headers={"Authorization": "Bearer not-the-token"})
    assert r.status_code == 403 and r.json()["detail"] == "the token is not valid for this service"
    assert client.get("/api/info", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    ok = client.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["token_required"] is True
    # public: the page, its files, the health check, the documentation
    for path in ("/", "/static/app.js", "/api/health", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    r = client.post("/api/jobs", files=_files(built), headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    # a non-loopback address gets a generated token
    app2 = create_app(ServeSettings(bundle=built.bundle, host="0.0.0.0", data=tmp_path / "d2"),
                      bundle=bundle)
    assert len(app2.state.settings.token) >= 30
    assert TestClient(app2).get("/api/info").status_code == 401


def test_a_bundle_without_segmentation_asks_for_the_mask(built, tmp_path):
    """A bundle with neither segmentation nor survival models (as test_predict makes one): the
    form has no clinical factor, an upload without a mask is refused, one with it accepted."""
    from gliorad.bundle import save_model_bundle
    from gliorad.features.radiomics import load_params

    s = built.sources
    path = save_model_bundle(tmp_path / "b", config={}, segmentation=None, cnn3d=s["cnn3d"],
                             cnn2d=None, grading=s["grading"], survival=None,
                             radiomics_params=load_params("fast"), info={"working_spacing": [4] * 3})
    client = TestClient(create_app(ServeSettings(bundle=path, data=tmp_path / "data")))
    info = client.get("/api/info").json()
    assert info["models"] == {"segmentation": False, "grading": True, "survival": False}
    assert info["clinical"] == []
    r = client.post("/api/jobs", files=_files(built))
    assert r.status_code == 422 and r.json()["detail"] == (
        "this bundle has no segmentation model: send the tumour mask (a NIfTI label mask on the "
        "images' grid) in 'mask'")
    seg = built.cohort / built.held_out / f"{built.held_out}_seg.nii.gz"
    r = client.post("/api/jobs", files=[*_files(built), ("mask", (seg.name, seg.read_bytes(), "x"))])
    assert r.status_code == 202
    assert r.json()["steps"] == ["queued", "features", "grading", "writing", "viewer"]


def test_a_bundle_that_preprocesses_names_the_patient_by_its_folder(built, tmp_path):
    """A bundle whose run preprocessed (the cheap ``brats`` preset): the upload is checked with
    the preprocessing's own file matching, and the patient folder takes the form's id (or
    ``patient`` for files at the top of the archive), as gliorad preprocess names patients."""
    from gliorad.bundle import save_model_bundle
    from gliorad.features.radiomics import load_params
    from gliorad.preprocess.config import make_config

    s = built.sources
    pre = make_config("brats", sequences=SEQUENCES, reference="t1ce").model_dump(mode="json")
    path = save_model_bundle(tmp_path / "b", config={"preprocess": pre}, segmentation=None,
                             cnn3d=s["cnn3d"], cnn2d=None, grading=s["grading"], survival=None,
                             radiomics_params=load_params("fast"), info={"working_spacing": [4] * 3})
    app = create_app(ServeSettings(bundle=path, data=tmp_path / "data"))
    client = TestClient(app)
    seg = built.cohort / built.held_out / f"{built.held_out}_seg.nii.gz"
    mask = ("mask", (seg.name, seg.read_bytes(), "x"))
    flat = _zip_bytes({p.name: p.read_bytes() for p in (_path(built, q) for q in SEQUENCES)})
    for data, expected in (({}, "patient"), ({"patient_id": "P9"}, "P9")):
        r = client.post("/api/jobs", files=[("study", ("s.zip", flat, "x")), mask], data=data)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["patient_id"] == expected and job["steps"][1] == "preprocessing"
        task = app.state.manager.get(job["id"]).task
        assert task["patient_dir"] == f"upload/study/{expected}"
        assert (app.state.manager.job_dir(job["id"]) / task["patient_dir"]
                / _path(built, "t1").name).is_file()
    # the preprocessing's patterns find no T2: refused at upload with their message
    two = _zip_bytes({p.name: p.read_bytes() for p in (_path(built, q) for q in ("t1", "t1ce"))})
    r = client.post("/api/jobs", files=[("study", ("s.zip", two, "x")), mask])
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "patient: missing t2 image: no file matches patterns ['*t2', '*t2w', '!*flair*'] (files: "
        f"{built.held_out}_t1.nii.gz, {built.held_out}_t1ce.nii.gz)"), r.text
    assert os.listdir(tmp_path / "data" / "incoming") == []


def test_restart_keeps_results_and_runs_unfinished_jobs_and_results_expire(service, built,
                                                                          bundle):
    """A second service over the same data folder serves the finished jobs and queues again
    the ones a stop interrupted; finished jobs go after keep_hours."""
    job = _submit(service, files=_files(built), data={"clinical": json.dumps(CLINICAL)})
    assert _wait(service.client, job["id"])["status"] == "done"
    result = service.client.get(f"/api/jobs/{job['id']}/result").json()
    # an interrupted job as a stop leaves it: job.json says running
    m = service.manager
    cut = "f" * 32
    shutil.copytree(m.jobs_dir / job["id"], m.jobs_dir / cut)
    state = json.loads((m.jobs_dir / cut / "job.json").read_text(encoding="utf-8"))
    state.update(id=cut, status="running", finished=None, step="features")
    (m.jobs_dir / cut / "job.json").write_text(json.dumps(state), encoding="utf-8")
    (m.jobs_dir / ("0" * 32)).mkdir()  # an unreadable job folder
    again = create_app(service.settings, bundle=bundle)
    client = TestClient(again)  # not started: the interrupted job waits in the queue
    assert client.get(f"/api/jobs/{job['id']}/result").json() == result
    restarted = client.get(f"/api/jobs/{cut}").json()
    assert restarted["status"] == "queued" and restarted["queue_position"] == 1
    assert not (m.jobs_dir / ("0" * 32)).exists()
    # retention: a finished job past keep_hours is gone, with its folder
    m2 = again.state.manager
    assert m2.clean(now=time.time() + service.settings.keep_hours * 3600 - 60) == 0
    assert m2.clean(now=time.time() + service.settings.keep_hours * 3600 + 60) >= 1
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert not (m.jobs_dir / job["id"]).exists()
