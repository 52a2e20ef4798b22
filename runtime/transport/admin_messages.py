"""The admin port's typed messages (runtime/proto/admin.proto) <-> the plain dicts the server
makes and the Session hands its callers: jobs, a job's detail, sites, events. One module for
both sides, so what the server packs is what a client unpacks."""

from __future__ import annotations

import json
import os
from typing import Any

from runtime.proto import admin_pb2

API_VERSION = 2  # of the admin port: typed job, site and event messages, Hello


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    for attr in ("item", "tolist"):  # numpy / torch scalars and arrays
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError, RuntimeError):
                continue
    return repr(value)  # a reply or an event is never lost to one odd value


def dump(value: Any) -> str:
    """JSON text of `value`; what JSON cannot hold becomes the nearest thing it can."""
    return json.dumps(value, default=_json_default)


def _opt(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


# ---- jobs ----------------------------------------------------------------------------------

_JOB_OPTIONAL = ("reason", "started_at", "ended_at", "current_round", "total_rounds")


def pack_job(job: dict[str, Any]) -> admin_pb2.Job:
    msg = admin_pb2.Job(
        job_id=job["job_id"], name=job.get("name") or "", status=job.get("status") or "",
        submitter=job.get("submitter") or "", submitted_at=float(job.get("submitted_at") or 0.0),
        sites=[str(s) for s in job.get("sites") or ()], min_clients=int(job.get("min_clients") or 0),
        round_in_progress=bool(job.get("round_in_progress")), folder=str(job.get("folder") or ""),
        workspace=str(job.get("workspace") or ""), extra_json=dump(job.get("extra") or {}))
    for key in _JOB_OPTIONAL:
        if job.get(key) is not None:
            setattr(msg, key, job[key])
    return msg


def unpack_job(msg: admin_pb2.Job) -> dict[str, Any]:
    job = {"job_id": msg.job_id, "short_id": msg.job_id[:8], "name": msg.name,
           "status": msg.status, "submitter": msg.submitter, "submitted_at": msg.submitted_at,
           "sites": list(msg.sites), "min_clients": msg.min_clients, "folder": msg.folder,
           "workspace": msg.workspace, "extra": json.loads(msg.extra_json or "{}")}
    for key in _JOB_OPTIONAL:
        job[key] = _opt(msg, key)
    if msg.round_in_progress:
        job["round_in_progress"] = True
    return job


def pack_job_detail(job: dict[str, Any]) -> admin_pb2.JobDetail:
    detail = admin_pb2.JobDetail(job=pack_job(job), failed_sites=job.get("failed_sites") or [])
    for site, why in (job.get("failure_details") or {}).items():
        detail.failure_details[str(site)] = str(why)
    for name, doc in (job.get("results") or {}).items():
        detail.results[str(name)] = dump(doc)
    for r in job.get("rounds") or ():
        rnd = detail.rounds.add(
            round=int(r["round"]), metrics_json=dump(r.get("metrics") or {}),
            recorded_at=float(r.get("recorded_at") or 0.0),
            sites_ok=r.get("sites_ok") or [], sites_failed=r.get("sites_failed") or [],
            sites_timed_out=r.get("sites_timed_out") or [])
        for key in ("total_rounds", "model_path", "seconds"):
            if r.get(key) is not None:
                setattr(rnd, key, r[key])
    for t in job.get("transitions") or ():
        tr = detail.transitions.add(status=t["status"], at=float(t["at"]))
        if t.get("reason") is not None:
            tr.reason = t["reason"]
    return detail


def unpack_job_detail(msg: admin_pb2.JobDetail) -> dict[str, Any]:
    job = unpack_job(msg.job)
    job["rounds"] = [{
        "round": r.round, "total_rounds": _opt(r, "total_rounds"),
        "metrics": json.loads(r.metrics_json or "{}"), "model_path": _opt(r, "model_path"),
        "recorded_at": r.recorded_at, "sites_ok": list(r.sites_ok),
        "sites_failed": list(r.sites_failed), "sites_timed_out": list(r.sites_timed_out),
        **({"seconds": r.seconds} if r.HasField("seconds") else {}),
    } for r in msg.rounds]
    job["transitions"] = [{"status": t.status, "reason": _opt(t, "reason"), "at": t.at}
                          for t in msg.transitions]
    job["failed_sites"] = list(msg.failed_sites)
    job["failure_details"] = dict(msg.failure_details)
    job["results"] = {name: json.loads(text) for name, text in msg.results.items()}
    return job


# ---- sites ---------------------------------------------------------------------------------

def pack_site(site: dict[str, Any]) -> admin_pb2.Site:
    return admin_pb2.Site(
        name=site["name"], status=site.get("status") or "",
        registered_at=float(site.get("registered_at") or 0.0),
        last_seen=float(site.get("last_seen") or 0.0),
        heartbeat_age=float(site.get("heartbeat_age") or 0.0),
        polling=bool(site.get("polling")), queued=int(site.get("queued") or 0),
        info_json=dump(site.get("info") or {}))


def unpack_site(msg: admin_pb2.Site) -> dict[str, Any]:
    return {"name": msg.name, "status": msg.status, "registered_at": msg.registered_at,
            "last_seen": msg.last_seen, "heartbeat_age": msg.heartbeat_age,
            "polling": msg.polling, "queued": msg.queued, "info": json.loads(msg.info_json or "{}")}


# ---- events --------------------------------------------------------------------------------

def pack_event(event: dict[str, Any]) -> admin_pb2.Event:
    data = {k: v for k, v in event.items() if k not in ("seq", "ts", "type")}
    msg = admin_pb2.Event(ts=float(event.get("ts") or 0.0), type=str(event.get("type") or ""),
                          data_json=dump(data))
    if event.get("seq") is not None:
        msg.seq = int(event["seq"])
    return msg


def unpack_event(msg: admin_pb2.Event) -> tuple[int | None, float, str, dict[str, Any]]:
    """(seq, ts, type, the other fields)."""
    return _opt(msg, "seq"), msg.ts, msg.type, json.loads(msg.data_json or "{}")
