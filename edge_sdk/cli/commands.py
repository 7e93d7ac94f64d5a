"""Every command on the app, registered here in the order ``edge-sdk --help`` lists them
(one place, so the order does not depend on which module is imported first)."""

from __future__ import annotations

from edge_sdk.cli.base import app, check_app
from edge_sdk.cli.bundles import devices, export
from edge_sdk.cli.checks import accuracy, bench, verify
from edge_sdk.cli.deploy import build, calibrate, doctor, export_triton
from edge_sdk.cli.predict import predict
from edge_sdk.cli.serving import serve, sidecar
from edge_sdk.cli.training import train

app.command()(predict)
app.command()(devices)
app.command()(export)
app.command()(train)
app.command()(sidecar)
app.command()(serve)
app.command("verify")(verify)
app.command("bench")(bench)
app.command()(calibrate)
app.command()(build)
app.command("export-triton")(export_triton)
app.command()(doctor)
check_app.command("parity", help="Same as `edge-sdk verify`.")(verify)
check_app.command("latency", help="Same as `edge-sdk bench`.")(bench)
check_app.command("accuracy")(accuracy)
