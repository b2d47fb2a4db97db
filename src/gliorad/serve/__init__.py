"""``gliorad serve``: a local web service and page for one patient's prediction.

A person drops a patient's MRI on the page (or a program posts it to the REST API), the
service runs :func:`gliorad.predict.predict_patient` with the bundle in a separate process, and
the page shows the grade probability, risk group and nomogram survival with a slice viewer of
the sequences and the tumour mask.

* :mod:`gliorad.serve.app` - the FastAPI application (:func:`~gliorad.serve.app.create_app`);
* :mod:`gliorad.serve.jobs` - job folders, queue, prediction processes, time limits, retention;
* :mod:`gliorad.serve.uploads` - NIfTI checks, ZIP limits and the patient folder;
* :mod:`gliorad.serve.worker` - the prediction process;
* :mod:`gliorad.serve.viewer` - the viewer's volumes;
* :mod:`gliorad.serve.settings` - the options (light: the command line checks them first);
* ``static/`` - the page (HTML, CSS, JavaScript; no file from anywhere else).

Nothing is imported here: ``gliorad.serve.settings`` stays light.
"""

__all__: list[str] = []
