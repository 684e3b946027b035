"""Cases of inputs: `folder:` datasets with faults in them, and the oneDNN extension's switch
and library (built into a copy of the package, so the checkout's own build is never touched).
"""

import os
import shutil
from pathlib import Path

import numpy as np

from scripts.faults.core import REPO, Case, Seen, outcome_of

# A folder dataset instead of the digits: every file read for training and evaluation.
FOLDER_FLAGS = [
    "--config=configs/default.py",
    "--config.eval.every_steps=100000",
    "--config.ckpt.every_steps=100",
    "--config.data.train_split=all",
    "--config.data.eval_split=all",
    "--config.data.train_pp=resize|normalize",
    "--config.data.cache=False",
    "--config.data.channels=3",
    "--config.train.num_steps=4",
    "--config.train.batch_size=8",
    "--config.eval.batch_size=8",
]
PER_CLASS = 10


def _png(path, size=(12, 12), seed=0, mode="RGB"):
    from PIL import Image

    pixels = np.random.RandomState(seed).randint(0, 255, (*size, 3), np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, "PNG")


def _dataset(root, classes=("a", "b")):
    for i, cls in enumerate(classes):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for j in range(PER_CLASS):
            _png(os.path.join(root, cls, f"{j}.png"), (12 + i, 12 + j), seed=10 * i + j)
    return root


def folder_case(fault, *, expect="ok", examples=None, corrupt=None, match=None):
    """Trains on a two-class folder after `fault(root)`; checks the examples evaluated and the
    files counted as corrupt against what the folder really holds."""

    def case(ctx):
        root = fault(_dataset(ctx.path("images"))) or ctx.path("images")
        wd = ctx.path("wd")
        run = ctx.train(wd, f"--config.data.source=folder:{root}", base=FOLDER_FLAGS)
        seen = Seen([run], expect=expect, match=match)
        if run.rc == 0:
            results = outcome_of(wd)["results"]
            got, bad = results.get("eval/examples"), len(results.get("corrupt_files", []))
            if examples is not None and got != examples:
                seen.wrong = (
                    f"evaluated {got} examples, the folder holds {examples} readable images"
                )
            elif corrupt is not None and bad != corrupt:
                seen.wrong = f"{bad} files counted as corrupt, {corrupt} expected"
            seen.note = f"{got} examples evaluated, {bad} counted as corrupt"
        return seen

    return case


def _link_loop(root):
    os.symlink("..", os.path.join(root, "a", "loop"))


def _non_utf8_file(root):
    _png(os.fsencode(os.path.join(root, "a")) + b"/caf\xe9.png", seed=99)


def _non_utf8_class(root):
    os.makedirs(os.fsencode(root) + b"/\xff\xfe")
    _png(os.fsencode(root) + b"/\xff\xfe/0.png", seed=98)


def _single_class(root):
    shutil.rmtree(os.path.join(root, "b"))


def _huge_png(root):
    from PIL import Image

    Image.new("1", (20_000, 10_000)).save(os.path.join(root, "a", "huge.png"))  # 200 MP, a few kB


def _corrupt(root):
    with open(os.path.join(root, "a", "0.png"), "r+b") as f:
        f.truncate(40)
    with open(os.path.join(root, "b", "notes.png"), "w") as f:
        f.write("not an image")


def _all_corrupt(root):
    for cls in ("a", "b"):
        for name in os.listdir(os.path.join(root, cls)):
            with open(os.path.join(root, cls, name), "w") as f:
                f.write("junk")


def _empty_class(root):
    os.makedirs(os.path.join(root, "c"))


def _zero_byte(root):
    Path(root, "b", "empty.png").touch()


def _dangling_link(root):
    os.symlink("/nonexistent/x.png", os.path.join(root, "a", "gone.png"))


def _modes(root):
    for k, mode in enumerate(("L", "RGBA", "P", "I;16")):
        _png(os.path.join(root, "b", f"mode{k}.png"), seed=50 + k, mode=mode)


def _jpeg_named_png(root):
    from PIL import Image

    Image.new("RGB", (16, 16), "red").save(os.path.join(root, "a", "really_jpeg.png"), "JPEG")


def _missing(root):
    shutil.rmtree(root)


# --- oneDNN --------------------------------------------------------------------------------


def _copy_repo(ctx) -> str:
    """A copy of the package, configs and train.py, with no oneDNN build of its own."""
    copy = ctx.path("repo")
    ignore = shutil.ignore_patterns("_build", "__pycache__")
    shutil.copytree(os.path.join(REPO, "cnnx"), os.path.join(copy, "cnnx"), ignore=ignore)
    shutil.copytree(os.path.join(REPO, "configs"), os.path.join(copy, "configs"), ignore=ignore)
    shutil.copy(os.path.join(REPO, "train.py"), copy)
    return copy


def onednn_case(value="on", damage=None, expect="error", match=r"oneDNN|onednn|ONEDNN"):
    def case(ctx):
        copy = _copy_repo(ctx)
        env = {"PYTHONPATH": copy, "CNNX_ONEDNN": "off"}
        runs = []
        if damage:
            build = ctx.run(["-m", "cnnx.backends.cpu.onednn", "build"], env=env, cwd=copy)
            if build.rc != 0:
                return Seen([build], expect="ok", note="the extension did not build")
            lib = next(
                os.path.join(copy, "cnnx/backends/cpu/_build", n)
                for n in os.listdir(os.path.join(copy, "cnnx/backends/cpu/_build"))
                if n.endswith(".so")
            )
            if damage == "truncate":
                os.truncate(lib, os.path.getsize(lib) // 3)
            elif damage == "foreign":
                import zlib

                shutil.copy(zlib.__file__ if zlib.__file__.endswith(".so") else _any_so(), lib)
            elif damage == "no_record":
                os.remove(lib + ".sha256")
        env["CNNX_ONEDNN"] = value
        runs.append(ctx.train(ctx.path("wd"), env=env, cwd=copy))
        return Seen(runs, expect=expect, match=match)

    return case


def _any_so() -> str:
    import glob

    import numpy

    return sorted(
        glob.glob(os.path.join(os.path.dirname(numpy.__file__), "**/*.so"), recursive=True)
    )[0]


F = f"default smoke on a folder: 2 classes x {PER_CLASS} PNGs, 4 steps"
N = 2 * PER_CLASS
CASES = [
    Case(
        "folder_baseline",
        "folder",
        F,
        "none (the baseline)",
        folder_case(lambda r: None, examples=N),
    ),
    Case(
        "folder_link_loop",
        "folder",
        F,
        "a/loop -> .. (a symlink loop into the folder of all classes)",
        folder_case(_link_loop, expect="error", match=r"link to the folder of all the classes"),
    ),
    Case(
        "folder_non_utf8_file",
        "folder",
        F,
        "a file name in Latin-1 (caf\\xe9.png)",
        folder_case(_non_utf8_file, examples=N + 1),
    ),
    Case(
        "folder_non_utf8_class",
        "folder",
        F,
        "a class folder named b'\\xff\\xfe'",
        folder_case(_non_utf8_class, expect="error", match=r"UTF-8|utf"),
    ),
    Case(
        "folder_single_class",
        "folder",
        F,
        "class b removed",
        folder_case(_single_class, expect="error", match=r"one class|class"),
    ),
    Case(
        "folder_200mp_png",
        "folder",
        F,
        "a 200-megapixel PNG of a few kB",
        folder_case(_huge_png, examples=N, corrupt=1),
        timeout_s=200,
    ),
    Case(
        "folder_corrupt_images",
        "folder",
        F,
        "a truncated PNG and a text file named .png",
        folder_case(_corrupt, examples=N - 1, corrupt=2),
    ),
    Case(
        "folder_all_corrupt",
        "folder",
        F,
        "every file replaced by junk",
        folder_case(_all_corrupt, expect="error", match=r"corrupt|unreadable|image"),
    ),
    Case(
        "folder_empty_class",
        "folder",
        F,
        "an empty class folder c",
        folder_case(_empty_class, expect="error", match=r"\bc\b|class"),
    ),
    Case(
        "folder_zero_byte_file",
        "folder",
        F,
        "an empty .png",
        folder_case(_zero_byte, examples=N, corrupt=1),
    ),
    Case(
        "folder_dangling_link",
        "folder",
        F,
        "a link to a missing file",
        folder_case(_dangling_link, expect="any"),
    ),
    Case(
        "folder_pixel_modes",
        "folder",
        F,
        "PNGs in L, RGBA, P and I;16 modes",
        folder_case(_modes, examples=N + 4),
    ),
    Case(
        "folder_jpeg_named_png",
        "folder",
        F,
        "a JPEG named .png",
        folder_case(_jpeg_named_png, examples=N + 1),
    ),
    Case(
        "folder_missing",
        "folder",
        F,
        "the folder does not exist",
        folder_case(_missing, expect="error", match=r"images|exist|folder"),
    ),
    Case(
        "onednn_on_unbuilt",
        "onednn",
        "default smoke, a package copy without the extension",
        "CNNX_ONEDNN=on",
        onednn_case(),
    ),
    Case("onednn_bad_value", "onednn", "default smoke", "CNNX_ONEDNN=maybe", onednn_case("maybe")),
    Case(
        "onednn_truncated",
        "onednn",
        "default smoke, the extension built",
        "the library cut to a third, CNNX_ONEDNN=on",
        onednn_case(damage="truncate"),
    ),
    Case(
        "onednn_truncated_auto",
        "onednn",
        "default smoke, the extension built",
        "the library cut to a third, CNNX_ONEDNN=auto",
        onednn_case("auto", damage="truncate", expect="any"),
    ),
    Case(
        "onednn_foreign",
        "onednn",
        "default smoke, the extension built",
        "another .so under its name, CNNX_ONEDNN=on",
        onednn_case(damage="foreign"),
    ),
    Case(
        "onednn_no_record",
        "onednn",
        "default smoke, the extension built",
        "its size/hash record removed, CNNX_ONEDNN=on",
        onednn_case(damage="no_record"),
    ),
]
