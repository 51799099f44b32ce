"""``semtel sim serve``: the local OpenAI-compatible endpoint simulator as its own server."""

from __future__ import annotations

import argparse


def _serve(args: argparse.Namespace) -> int:
    from semtel_dagster.sim.server import main_serve

    main_serve(
        port=args.port,
        host=args.host,
        tpm=args.tpm,
        rpm=args.rpm,
        latency_ms=args.latency_ms,
        endpoints_yaml=args.config,
        model=args.model,
        labeler=args.labeler,
    )
    return 0


def register(commands) -> None:
    sim = commands.add_parser("sim", help="the local OpenAI-compatible endpoint simulator").add_subparsers(
        dest="sim_command", required=True
    )
    serve = sim.add_parser("serve", help="serve simulated endpoints over HTTP until interrupted")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--tpm", type=int, help="tokens per minute (prompt + max_tokens), unlimited if unset")
    serve.add_argument("--rpm", type=int, help="requests per minute, unlimited if unset")
    serve.add_argument("--latency-ms", type=float, help="base latency per answer")
    serve.add_argument("--model", help="model name the endpoint serves")
    serve.add_argument(
        "--labeler",
        choices=["keyword", "embedding"],
        help="keyword (default): words of the label definitions; embedding: nearest definition by sentence "
        "embedding with calibrated noise (needs the 'embeddings' extra)",
    )
    serve.add_argument("--config", help="YAML with several simulated endpoints (overrides the flags)")
    serve.set_defaults(func=_serve)
