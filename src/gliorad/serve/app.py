"""The ASGI application of ``gliorad serve`` (FastAPI): the REST API under ``/api``, the page
at ``/`` with its files under ``/static``, the OpenAPI documents at ``/docs`` and ``/redoc``
(served from the installed package, no CDN).

API (every ``/api`` route but ``/api/health`` takes ``Authorization: Bearer <token>`` when the
service has a token):

* ``GET /api/info``: the bundle (sequences, the clinical factors its nomograms take, models),
  the limits.
* ``POST /api/jobs`` (multipart form): the sequences as NIfTI files in fields named after them
  (``t1``, ``t1ce``, ``t2``, ``flair``), or one ZIP of NIfTI files or of a DICOM study in
  ``study``; optionally ``mask`` (a tumour mask on the images' grid, used instead of the
  bundle's segmentation), ``clinical`` (a JSON object, or ``age=45,grade=III``) and
  ``patient_id``. 202 with the job's status; 4xx naming each problem, nothing kept.
* ``GET /api/jobs/{id}``: status, step and progress, queue position, error.
* ``GET /api/jobs/{id}/result`` (``prediction.json``, the schema of ``gliorad predict``),
  ``/mask`` (NIfTI), ``/summary`` (the one-page HTML), ``/features`` (CSV), ``/viewer`` (the
  viewer's ``viewer.json``) and ``/viewer/{name}`` (a volume); 409 until the job is done.
* ``DELETE /api/jobs/{id}``: the job and its files (a running job is stopped).

Checks before any request reaches a route (:class:`_Guard`): the token (so that no upload is
read without it) and the request body's size (``Content-Length``, then the bytes counted).
"""

from __future__ import annotations

import hmac
import json
import shutil
import tempfile
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Security, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from gliorad import __version__
from gliorad.errors import GlioradInputError
from gliorad.serve.jobs import Job, JobManager, QueueFull, valid_job_id
from gliorad.serve.settings import ServeSettings
from gliorad.serve.uploads import (
    PATIENT_ID,
    Limits,
    UploadError,
    check_nifti,
    extract_zip,
    nifti_suffix,
    patient_root,
    place_sequences,
    rel,
    sequence_from_name,
    study_kind,
)

__all__ = ["ServeError", "create_app"]

STANDARD_FIELDS = ("t1", "t1ce", "t2", "flair")
FORM_OVERHEAD = 1 << 20  # the multipart framing and the form's text fields
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; frame-src blob:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SUMMARY_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


#: (module level: FastAPI reads the dependency's annotations in this module's namespace)
_BEARER = HTTPBearer(auto_error=False, description="the token gliorad serve printed at start (only "
                                                   "when the service has one)")


class ServeError(HTTPException):
    """A refused request: HTTP ``status`` and one line per problem (JSON ``detail``, the lines
    joined, and ``problems``)."""

    def __init__(self, status: int, problems: str | list[str],
                 headers: dict[str, str] | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(status, "\n".join(self.problems), headers)


def _token_problem(settings: ServeSettings, header: str | None) -> ServeError | None:
    if settings.token is None:
        return None
    scheme, _, value = (header or "").partition(" ")
    if not header or scheme.lower() != "bearer" or not value.strip():
        return ServeError(401, "this service requires a token: send the header "
                               "'Authorization: Bearer <token>' (gliorad serve printed the token "
                               "when it started; on the page, open the address it printed)",
                          {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(value.strip().encode(), settings.token.encode()):
        return ServeError(403, "the token is not valid for this service",
                          {"WWW-Authenticate": "Bearer"})
    return None


class _Guard:
    """Pure ASGI middleware: the token of ``/api`` requests (before their body is read), the
    request body's size, and the headers every response gets."""

    def __init__(self, app: Any, settings: ServeSettings, max_body: int):
        self.app, self.settings, self.max_body = app, settings, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        started = False

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if path.startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                if path == "/":
                    extra += [(b"content-security-policy", PAGE_CSP.encode()),
                              (b"x-frame-options", b"DENY")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        async def refuse(err: ServeError) -> None:
            body = json.dumps({"detail": err.detail, "problems": err.problems}).encode()
            hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in (err.headers or {}).items())]
            await send_with_headers({"type": "http.response.start", "status": err.status_code,
                                     "headers": hdrs})
            await send_with_headers({"type": "http.response.body", "body": body})

        if path.startswith("/api/") and path != "/api/health":
            err = _token_problem(self.settings, headers.get("authorization"))
            if err is not None:
                await refuse(err)
                return
        limit_mb = self.settings.max_upload_mb
        too_large = ServeError(413, f"the upload is larger than this service's limit of "
                                    f"{limit_mb:g} MB (--max-upload-mb)")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await refuse(too_large)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise too_large
            return message

        try:
            await self.app(scope, counted, send_with_headers)
        except ServeError as err:  # raised while a route's body was read outside FastAPI
            if started:
                raise
            await refuse(err)


# ------------------------------------------------------------------------------ the bundle
def bundle_info(bundle: Any, settings: ServeSettings) -> dict[str, Any]:
    """What ``GET /api/info`` says (and the page builds its form from)."""
    from gliorad.predict import clinical_fields

    seqs = bundle.sequences
    return {
        "service": "gliorad serve", "version": __version__,
        "bundle": bundle.provenance(),
        "sequences": seqs,
        "upload_fields": [s for s in STANDARD_FIELDS if s in seqs],
        "zip_only": any(s not in STANDARD_FIELDS for s in seqs),
        "clinical": clinical_fields(bundle),
        "preprocess": bool(bundle.inputs.get("preprocess")),
        "models": {"segmentation": bundle.segmentation is not None,
                   "grading": bundle.grading is not None, "survival": bundle.survival is not None},
        "limits": {"max_upload_mb": settings.max_upload_mb,
                   "max_unzipped_mb": settings.max_unzipped_mb, "max_files": settings.max_files,
                   "time_limit_s": settings.time_limit_s, "keep_hours": settings.keep_hours,
                   "max_queue": settings.max_queue},
        "workers": settings.workers,
        "token_required": settings.token_required,
    }


def _clinical(text: str | None) -> dict[str, str]:
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if not text.startswith("{"):
        from gliorad.commands.predict import parse_clinical_args

        try:
            return parse_clinical_args([text])
        except GlioradInputError as err:
            raise ServeError(422, [f"clinical: {p}" for p in err.problems]) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ServeError(422, f"clinical: not valid JSON ({err.msg}, character {err.pos}); "
                              'expected an object such as {"age": 45, "grade": "III"}') from err
    if not isinstance(data, dict):
        raise ServeError(422, 'clinical: expected a JSON object such as {"age": 45, "grade": "III"}')
    out = {}
    for k, v in data.items():
        if v is None or (isinstance(v, str) and not v.strip()):
            continue  # a field left empty on the form
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ServeError(422, f"clinical: {k!r} has the value {v!r}; expected text or a number")
        out[str(k).strip().lower()] = str(v)
    return out


def _save(upload: UploadFile, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    upload.file.seek(0)
    with open(dest, "wb") as fh:
        shutil.copyfileobj(upload.file, fh, 1 << 20)
    return dest


def _given(upload: UploadFile | None) -> bool:
    return upload is not None and bool(upload.filename)


class _Intake:
    """One upload checked in its incoming folder: where the patient's files are, the task."""

    def __init__(self, bundle: Any, limits: Limits, folder: Path):
        self.b, self.limits, self.folder = bundle, limits, folder
        self.up = folder / "upload"
        self.pre = self.b.inputs.get("preprocess")
        cohort = self.b.config.get("cohort") if isinstance(self.b.config, dict) else None
        self.dicom_settings = (cohort or {}).get("dicom")
        self.mapping = None if self.pre else ((self.b.inputs.get("naming") or {}).get("mapping")
                                              or None)

    def _problems(self, err: GlioradInputError) -> UploadError:
        return UploadError(422, [rel(p, self.folder) for p in err.problems])

    def _dicom_cfg(self) -> Any:
        from gliorad.config import DicomConfig

        return DicomConfig.model_validate(self.dicom_settings or {})

    def verify(self, patient: Path) -> str:
        """``predict``'s own file search on the patient folder; the patient id."""
        from gliorad.predict import find_patient

        try:
            if self.pre:
                from gliorad.preprocess.config import PreprocessConfig
                from gliorad.preprocess.inputs import default_patient_id, match_files

                match_files(patient, PreprocessConfig.model_validate(self.pre), self._dicom_cfg())
                return default_patient_id(patient)
            return find_patient(patient, self.b.sequences, self.b.inputs.get("naming"))[1]
        except GlioradInputError as err:
            raise self._problems(err) from err

    def files(self, uploads: dict[str, UploadFile], pid: str | None) -> tuple[dict, str]:
        seqs = self.b.sequences
        other = [s for s in seqs if s not in STANDARD_FIELDS]
        if other:
            raise UploadError(422, f"this bundle's models need {', '.join(other)}, which has no "
                                   f"form field; upload one ZIP in 'study' laid out as the "
                                   f"bundle's file templates say ({self.mapping or 'see the bundle'})")
        missing = [s for s in seqs if s not in uploads]
        if missing:
            raise UploadError(422, [f"no {s} image: this bundle's models need {', '.join(seqs)}; "
                                    f"send each as a NIfTI file in the form field named after it "
                                    "(or one ZIP in 'study')" for s in missing])
        saved: dict[str, Path] = {}
        problems = []
        names = {}
        for seq in seqs:
            up = uploads[seq]
            name = Path(up.filename or "").name
            suffix = nifti_suffix(name)
            if suffix is None:
                problems.append(f"{seq}: file {name!r} is not a NIfTI file name; expected "
                                ".nii or .nii.gz")
                continue
            path = _save(up, self.up / "files" / f"{seq}{suffix}")
            try:
                check_nifti(path, f"{seq} ({name})", self.limits)
            except UploadError as err:
                if err.status == 413:
                    raise
                problems += err.problems
                continue
            saved[seq] = path
            names[seq] = sequence_from_name(name)[1]
        if problems:
            raise UploadError(422, problems)
        guessed = set(names.values())
        if pid is None:
            pid = guessed.pop() if len(guessed) == 1 and None not in guessed else "patient"
        patient = place_sequences(saved, self.up / "patient", pid, self.mapping)
        pid = self.verify(patient)
        return {"patient_dir": patient.relative_to(self.folder).as_posix()}, pid

    def study(self, upload: UploadFile, pid: str | None) -> tuple[dict, str, str]:
        name = Path(upload.filename or "study.zip").name
        archive = _save(upload, self.up / "study.zip")
        extract_zip(archive, self.up / "study", self.limits, label=f"study ({name})")
        archive.unlink()
        root = patient_root(self.up / "study")
        kind = study_kind(root, self.limits, base=self.up / "study")
        if self.pre:
            root = self._name_patient_folder(root, pid)
        if self.pre or kind == "nifti":
            found = self.verify(root)
            return {"patient_dir": root.relative_to(self.folder).as_posix()}, found, f"zip-{kind}"
        from gliorad.dicom import identify_study

        try:
            ident = identify_study(root, self._dicom_cfg(), self.b.sequences)
        except GlioradInputError as err:
            raise self._problems(err) from err
        if not ident.ok:
            raise self._problems(GlioradInputError(ident.problems))
        return ({"study_dir": root.relative_to(self.folder).as_posix(), "convert_dicom": True},
                pid or "patient", "zip-dicom")

    def _name_patient_folder(self, root: Path, pid: str | None) -> Path:
        """A bundle that preprocesses names the patient by its folder (as ``gliorad preprocess``
        does): the folder is renamed to the form's patient id, or to ``patient`` when the
        archive's files lie at its top or in a folder with a generic name (``DICOM``, ...)."""
        from gliorad.preprocess.inputs import GENERIC_FOLDER_NAMES

        study = self.up / "study"
        flat = root == study
        name = pid or ("patient" if flat or root.name.lower() in GENERIC_FOLDER_NAMES else None)
        if name is None or (not flat and root.name == name):
            return root
        if flat:
            moved = self.up / "study-files"
            study.rename(moved)
            study.mkdir()
            return moved.rename(study / name)
        return root.rename(root.parent / name)  # patient_root: the only entry of its parent

    def mask(self, upload: UploadFile) -> str:
        name = Path(upload.filename or "").name
        suffix = nifti_suffix(name)
        if suffix is None:
            raise UploadError(422, f"mask: file {name!r} is not a NIfTI file name; expected .nii "
                                   "or .nii.gz")
        path = _save(upload, self.up / f"mask{suffix}")
        check_nifti(path, f"mask ({name})", self.limits)
        return path.relative_to(self.folder).as_posix()

    def steps(self, task: dict[str, Any]) -> list[str]:
        b = self.b
        return [*(["converting"] if task.get("convert_dicom") else []),
                *(["preprocessing"] if self.pre else []),
                *(["segmentation"] if not task.get("mask") and b.segmentation is not None else []),
                "features", *(["grading"] if b.grading is not None else []),
                *(["survival"] if b.survival is not None else []), "writing", "viewer"]


# -------------------------------------------------------------------------------- the app
def create_app(settings: ServeSettings, bundle: Any = None) -> FastAPI:
    """The service for ``settings`` (checked: :meth:`ServeSettings.checked`). ``bundle``: the
    bundle already loaded (else loaded from ``settings.bundle``; a bad bundle raises
    :class:`GlioradInputError`). The prediction processes start with the application's
    lifespan (``uvicorn``, or ``with TestClient(app)``)."""
    from fastapi_offline import FastAPIOffline

    from gliorad.bundle import load_model_bundle

    settings = settings.checked()
    b = bundle if bundle is not None else load_model_bundle(settings.bundle)
    info = bundle_info(b, settings)
    if settings.data is None:
        data, owns = Path(tempfile.mkdtemp(prefix="gliorad-serve-")), True
    else:
        data, owns = Path(settings.data), False
    manager = JobManager(settings, data, owns_data=owns)
    limits = Limits(max_upload_bytes=int(settings.max_upload_mb * 2**20),
                    max_unzipped_bytes=int(settings.max_unzipped_mb * 2**20),
                    max_files=settings.max_files)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        manager.start()
        try:
            yield
        finally:
            manager.stop()

    app = FastAPIOffline(
        title="gliorad serve", version=__version__, lifespan=lifespan,
        description="Glioma grade probability, LGG risk group and nomogram survival of one "
                    "patient's MRI with a gliorad model bundle. Research software: model "
                    "outputs, not a diagnosis.")
    app.state.settings, app.state.manager, app.state.bundle_info = settings, manager, info
    app.add_middleware(_Guard, settings=settings,
                       max_body=limits.max_upload_bytes + FORM_OVERHEAD)

    @app.exception_handler(ServeError)
    async def _serve_error(_request: Any, err: ServeError) -> JSONResponse:
        return JSONResponse({"detail": err.detail, "problems": err.problems},
                            status_code=err.status_code, headers=err.headers)

    def authorised(cred: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]) -> None:
        # the middleware has already checked the header; this declares it in the OpenAPI document
        err = _token_problem(settings, None if cred is None else f"{cred.scheme} {cred.credentials}")
        if err is not None:
            raise err

    auth = [Depends(authorised)]
    static = resources.files("gliorad.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/health", tags=["service"], summary="Is the service up (no token needed)")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "token_required": settings.token_required}

    @app.get("/api/info", tags=["service"], dependencies=auth,
             summary="The bundle, its sequences and clinical factors, and the limits")
    def get_info() -> dict[str, Any]:
        return {**info, "jobs": manager.counts()}

    def job_or_404(job_id: str) -> Job:
        job = manager.get(job_id) if valid_job_id(job_id) else None
        if job is None:
            raise ServeError(404, f"job {job_id[:40]!r} not found: unknown, deleted, or expired "
                                  f"(results are kept {settings.keep_hours:g} hours)")
        return job

    def done_job(job_id: str) -> Job:
        job = job_or_404(job_id)
        if job.status != "done":
            detail = (f": {'; '.join(job.error['problems'])}" if job.status == "failed"
                      and job.error else "")
            raise ServeError(409, f"job {job_id} is {job.status}{detail}; its files are there "
                                  "once its status is done")
        return job

    @app.post("/api/jobs", tags=["jobs"], status_code=202, dependencies=auth,
              summary="Upload one patient's MRI and queue the prediction")
    def create_job(
        t1: Annotated[UploadFile | None, File(description="T1 (NIfTI)")] = None,
        t1ce: Annotated[UploadFile | None, File(description="T1 with gadolinium (NIfTI)")] = None,
        t2: Annotated[UploadFile | None, File(description="T2 (NIfTI)")] = None,
        flair: Annotated[UploadFile | None, File(description="FLAIR (NIfTI)")] = None,
        study: Annotated[UploadFile | None, File(
            description="Instead of the sequences: one ZIP of the patient's NIfTI files (named "
                        "as the bundle's cohort was) or of a DICOM study")] = None,
        mask: Annotated[UploadFile | None, File(
            description="Optional tumour mask (NIfTI) on the images' grid, used instead of the "
                        "bundle's segmentation")] = None,
        clinical: Annotated[str | None, Form(
            description='Clinical factors of the nomograms: a JSON object ({"age": 45, '
                        '"grade": "III"}) or age=45,grade=III')] = None,
        patient_id: Annotated[str | None, Form(
            description="Patient id for the outputs (letters, digits, . _ -); default: from "
                        "the file names")] = None,
    ) -> JSONResponse:
        values = _clinical(clinical)
        pid = (patient_id or "").strip() or None
        if pid is not None and not PATIENT_ID.match(pid):
            raise ServeError(422, f"patient_id {pid[:80]!r}: expected 1-64 letters, digits, "
                                  "'.', '_' or '-', starting with a letter or digit")
        sequences = {k: v for k, v in (("t1", t1), ("t1ce", t1ce), ("t2", t2), ("flair", flair))
                     if _given(v)}
        if _given(study) and sequences:
            raise ServeError(422, "send either the sequences (form fields "
                                  f"{', '.join(sequences)}) or one ZIP in 'study', not both")
        if not _given(study) and not sequences:
            raise ServeError(422, "no images: send the sequences this bundle's models need ("
                                  f"{', '.join(b.sequences)}) as NIfTI files in form fields named "
                                  "after them, or one ZIP in 'study'")
        if b.segmentation is None and not _given(mask):
            raise ServeError(422, "this bundle has no segmentation model: send the tumour mask "
                                  "(a NIfTI label mask on the images' grid) in 'mask'")
        job_id, folder = manager.new_upload()
        submitted = False
        try:
            intake = _Intake(b, limits, folder)
            if _given(study):
                task, pid, source = intake.study(study, pid)
            else:
                task, pid = intake.files({k: v for k, v in sequences.items() if k in b.sequences},
                                         pid)
                source = "files"
            if _given(mask):
                task["mask"] = intake.mask(mask)
            task.update(pid=pid, clinical=values)
            job = manager.submit(job_id, folder, source=source, patient_id=pid, task=task,
                                 steps=intake.steps(task))
            submitted = True
        except UploadError as err:
            raise ServeError(err.status, err.problems) from err
        except QueueFull as err:
            raise ServeError(503, f"the service is busy: {err}; try again later",
                             {"Retry-After": "60"}) from err
        finally:
            if not submitted:
                shutil.rmtree(folder, ignore_errors=True)
        body = manager.public(job)
        body["ignored"] = sorted(set(sequences) - set(b.sequences))
        return JSONResponse(body, status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

    @app.get("/api/jobs/{job_id}", tags=["jobs"], dependencies=auth, summary="A job's status")
    def job_status(job_id: str) -> dict[str, Any]:
        return manager.public(job_or_404(job_id))

    @app.delete("/api/jobs/{job_id}", tags=["jobs"], status_code=204, dependencies=auth,
                summary="Delete a job and its files (a running job is stopped)")
    def delete_job(job_id: str) -> None:
        if not (valid_job_id(job_id) and manager.delete(job_id)):
            job_or_404(job_id)

    def result_file(job_id: str, name: str, media: str, download: str | None = None,
                    headers: dict[str, str] | None = None) -> FileResponse:
        job = done_job(job_id)
        path = manager.job_dir(job.id) / name
        if not path.is_file():
            raise ServeError(404, f"job {job_id}: {Path(name).name} not found")
        return FileResponse(path, media_type=media, headers=headers,
                            filename=download.format(pid=job.patient_id) if download else None,
                            content_disposition_type="attachment")

    @app.get("/api/jobs/{job_id}/result", tags=["results"], dependencies=auth,
             summary="prediction.json: the same schema as gliorad predict")
    def job_result(job_id: str) -> FileResponse:
        return result_file(job_id, "result/prediction.json", "application/json")

    @app.get("/api/jobs/{job_id}/mask", tags=["results"], dependencies=auth,
             summary="The tumour mask (NIfTI) on the patient's grid")
    def job_mask(job_id: str) -> FileResponse:
        return result_file(job_id, "result/mask.nii.gz", "application/gzip", "{pid}_mask.nii.gz")

    @app.get("/api/jobs/{job_id}/summary", tags=["results"], dependencies=auth,
             summary="summary.html: the prediction on one self-contained page")
    def job_summary(job_id: str) -> FileResponse:
        resp = result_file(job_id, "result/summary.html", "text/html; charset=utf-8",
                           headers={"Content-Security-Policy": SUMMARY_CSP})
        resp.headers["content-disposition"] = "inline"
        return resp

    @app.get("/api/jobs/{job_id}/features", tags=["results"], dependencies=auth,
             summary="features.csv: the patient's feature row")
    def job_features(job_id: str) -> FileResponse:
        return result_file(job_id, "result/features.csv", "text/csv", "{pid}_features.csv")

    @app.get("/api/jobs/{job_id}/viewer", tags=["results"], dependencies=auth,
             summary="The slice viewer's description of its volumes")
    def job_viewer(job_id: str) -> FileResponse:
        return result_file(job_id, "viewer/viewer.json", "application/json")

    @app.get("/api/jobs/{job_id}/viewer/{name}", tags=["results"], dependencies=auth,
             summary="One volume of the slice viewer: uint8, LPS order, gzip-encoded")
    def job_volume(job_id: str, name: str) -> FileResponse:
        job = done_job(job_id)
        meta = json.loads((manager.job_dir(job.id) / "viewer" / "viewer.json").read_text("utf-8"))
        if name not in meta["files"]:
            raise ServeError(404, f"job {job_id}: no volume {name[:40]!r}; expected one of: "
                                  f"{', '.join([*meta['sequences'], 'mask'])}")
        resp = result_file(job_id, f"viewer/{meta['files'][name]}", "application/octet-stream",
                           headers={"Content-Encoding": "gzip"})
        resp.headers["content-disposition"] = "inline"
        return resp

    return app
