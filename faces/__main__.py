"""Command line: `python -m faces align|parse|detect PHOTO ...` (bad input: a line or two, exit code 2).

    python -m faces align PHOTO --size 256 --frame celebahq --output OUT.png
    python -m faces parse PHOTO --output labels.png                 (the photo's size)
    python -m faces parse PHOTO --frame celebahq --size 256 --output labels.png   (in the crop)
    python -m faces detect PHOTO                                    (one line per face)
"""

from __future__ import annotations

import argparse
import sys

from PIL import Image, UnidentifiedImageError

from .align import NoFaceError, align, center_crop
from .detect import detect
from .frames import FRAMES
from .parsing import FACE_PALETTE, parsing_from_landmarks


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m faces", description="Face photos into the models' frames.")
    sub = parser.add_subparsers(dest="command", required=True)
    al = sub.add_parser("align", help="write the largest face aligned to a model's frame")
    pa = sub.add_parser("parse", help="write a CelebAMask-HQ parsing map (index PNG) drawn from the landmarks")
    de = sub.add_parser("detect", help="print each face's box, score and eye and mouth centres")
    for p in (al, pa, de):
        p.add_argument("photo", help="the photo (any format Pillow reads)")
    for p, required in ((al, True), (pa, False)):
        p.add_argument("--frame", choices=sorted(FRAMES), default="celebahq" if required else None,
                       help="the model's frame" + ("" if required else "; without it, the map has the photo's size"))
        p.add_argument("--size", type=int, default=256, help="side of the aligned crop in pixels")
        p.add_argument("--output", required=True, help="output PNG")
    al.add_argument("--fallback", choices=("none", "center"), default="none",
                    help="what to write when no face is found: nothing (exit 2) or the centre crop")
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        photo = Image.open(args.photo)
        photo.load()
    except (OSError, UnidentifiedImageError) as e:
        return _fail(f"cannot read {args.photo!r} as an image ({e.__class__.__name__}: {e})")
    photo = photo.convert("RGB")
    try:
        if args.command == "detect":
            for i, f in enumerate(detect(photo)):
                print(f"face {i}: box {tuple(round(v, 1) for v in f.box)} score {f.score:.2f} turned {f.angle:g} "
                      f"eyes {tuple(round(v, 1) for v in f.eye_left)} {tuple(round(v, 1) for v in f.eye_right)} "
                      f"mouth {tuple(round(v, 1) for v in f.mouth)}")
            return 0
        faces = detect(photo)
        if not faces and not (args.command == "align" and args.fallback == "center"):
            hint = "; --fallback center writes the centre crop instead" if args.command == "align" else ""
            raise NoFaceError(f"no face found in {args.photo}{hint}")
        if args.command == "align":
            aligned = align(photo, faces[0], args.size, args.frame) if faces else center_crop(photo, args.size)
            out = aligned.image
        else:
            if args.frame is None:
                labels = parsing_from_landmarks(faces[0], (photo.height, photo.width))
            else:
                aligned = align(photo, faces[0], args.size, args.frame)
                labels = parsing_from_landmarks(aligned.face, (args.size, args.size))
            out = Image.fromarray(labels)
            out.putpalette(FACE_PALETTE.ravel().tolist())
        out.save(args.output, format="PNG")
    except ValueError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot write {args.output!r} ({e})")
    print(f"wrote {args.output}" + ("" if faces or args.command != "align" else " (no face found: the centre crop)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
