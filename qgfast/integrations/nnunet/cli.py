"""``qgfast nnunet register | unregister | status``."""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    nnunet = commands.add_parser(
        "nnunet",
        help="make qgfast's nnU-Net v2 trainers usable with nnUNetv2_train -tr",
        description="nnU-Net looks trainers up inside its own package: `register` writes one "
        "module there that imports qgfast's trainers (nnUNetTrainerMeanTeacher, "
        "nnUNetTrainerMeanTeacherQW, nnUNetTrainerPL, nnUNetTrainerPLQW); `unregister` "
        "removes it. docs/integrations.md describes the trainers and their settings.",
    )
    nnunet.add_argument("action", choices=("register", "unregister", "status"))
    nnunet.set_defaults(func=cmd_nnunet)


def cmd_nnunet(args: argparse.Namespace) -> int:
    from qgfast.integrations import nnunet

    try:
        if args.action == "register":
            path = nnunet.register()
            print(f"registered {', '.join(nnunet.TRAINER_NAMES)} in {path}")
        elif args.action == "unregister":
            removed = nnunet.unregister()
            print("removed " + str(nnunet.registration_file()) if removed else "not registered")
        else:
            state = "registered" if nnunet.is_registered() else "not registered"
            print(f"{state} ({nnunet.registration_file()}); supports {nnunet.SUPPORTED}")
    except (ImportError, FileExistsError) as err:
        raise SystemExit(f"qgfast nnunet {args.action}: {err}") from None
    return 0
