"""``featcli kernels list | show | inspect``: browse the kernel library, the tensors of checkpoints, and conv
layers' filter banks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from featcli.cli.base import FeatcliGroup, app
from featcli.cli.console import err_console, out_console, print_json
from featcli.errors import KernelError

if TYPE_CHECKING:
    from rich.text import Text

    from featcli.kernels import Kernel
    from featcli.kernels.layers import ConvLayer

kernels_app = typer.Typer(
    cls=FeatcliGroup,  # the root's group class: its --help option skips pydantic too
    name="kernels",
    help=(
        "Browse the kernel library, show a kernel, list the conv weights of a checkpoint.\n\n"
        "Example: featcli kernels show sobel_x"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(kernels_app, name="kernels")

KernelsDirOpt = Annotated[
    str | None,
    typer.Option("--kernels-dir", envvar="FEATCLI_KERNELS_DIR", show_default=False,
                 help="Folder of your own kernels (*.toml, *.txt, *.npy), added to the built-in ones."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
TrustOpt = Annotated[
    bool,
    typer.Option("--trust-torchscript",
                 help="Allow TorchScript files. They are code: only for files from a source you trust."),
]
_MATRIX_LIMIT = 15
_CHANNEL_ROWS = 16


def _fmt(v: float) -> str:
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"


@kernels_app.command("list")
def list_command(
    tag: Annotated[str | None, typer.Option(
        "--tag", "-t", show_default=False, help="Only kernels with this tag (edge, blur, sharpen, ...)."
    )] = None,
    as_json: JsonOpt = False,
    kernels_dir: KernelsDirOpt = None,
) -> None:
    """List the named kernels (name, size, tags, sum, description) and the parametric families.

    Example: featcli kernels list --tag edge
    """
    from featcli.kernels import families as kf
    from featcli.kernels import library, list_kernels

    ks = list_kernels(kernels_dir, tag=tag)
    fams = [f for f in kf.FAMILIES.values() if tag is None or tag.lower() in f.tags]
    if not ks and not fams:
        tags = sorted({t for k in library(kernels_dir).values() for t in k.tags})
        raise KernelError(f"no kernel tagged {tag!r}; tags: {', '.join(tags)}")
    if as_json:
        print_json({
            "kernels": [{"name": k.name, "shape": list(k.shape), "tags": list(k.tags), "sum": k.sum,
                         "description": k.description, "source": k.source, "origin": k.origin} for k in ks],
            "families": [{"name": f.name, "params": list(f.params), "example": f.example,
                          "description": f.description, "tags": list(f.tags)} for f in fams],
        })
        return
    from rich.table import Table
    from rich.text import Text

    con = out_console()
    if ks:
        table = Table(title="Named kernels", title_justify="left")
        for col in ("name", "size", "tags", "sum", "description"):
            table.add_column(col, no_wrap=col in ("name", "size"),
                             justify="right" if col == "sum" else "left")
        for k in ks:
            origin = "" if k.origin == "built-in" else f" ({k.origin})"
            table.add_row(Text(k.name), f"{k.shape[0]}x{k.shape[1]}", Text(", ".join(k.tags)),
                          _fmt(k.sum + 0.0), Text(k.description + origin))
        con.print(table)
    if fams:
        ft = Table(title="Parametric families (also: sobel, prewitt, scharr, kirsch with angle=)",
                   title_justify="left")
        for col in ("family", "example", "description"):
            ft.add_column(col, no_wrap=col != "description")
        for f in fams:
            ft.add_row(Text(f.signature()), Text(f.example), Text(f.description))
        con.print(ft)


def _matrix_table(k: Kernel) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    for _ in range(k.shape[1]):
        table.add_column(justify="right")
    for row in k.weights:
        table.add_row(*(Text(_fmt(v), style="green" if v > 0 else "red" if v < 0 else "dim") for v in row))
    return table


def _summary(k: Kernel) -> Text:
    from rich.text import Text

    f = k.factors
    sep = "no"
    if f is not None:
        sep = f"yes: column [{' '.join(_fmt(v) for v in f[0])}] x row [{' '.join(_fmt(v) for v in f[1])}]"
    lines = [
        f"sum {_fmt(k.sum + 0.0)}   min {_fmt(k.min)}   max {_fmt(k.max)}   "
        f"zero-sum {'yes' if k.is_zero_sum else 'no'}   normalisation {k.normalisation}",
        f"separable {sep}",
    ]
    if k.tags:
        lines.append(f"tags {', '.join(k.tags)}")
    if k.source:
        lines.append(f"source {k.source}")
    return Text("\n".join(lines))


@kernels_app.command("show")
def show_command(
    ref: Annotated[str, typer.Argument(metavar="NAME-OR-SPEC", show_default=False,
                                       help="A name (sobel_x), a spec (gaussian:size=7,sigma=1.5), an inline "
                                            "matrix ('1 0 -1; 2 0 -2; 1 0 -1'), a file, FILE:KEY, or a "
                                            "featcli model's conv layer: MODEL.safetensors:N (the N-th conv) "
                                            "or MODEL.safetensors:sK (stage K).")],
    png: Annotated[str | None, typer.Option("--png", show_default=False,
                                             help="Also write a picture: of a kernel, with its response on "
                                                  "step edges and on an impulse; of a conv layer, its filter "
                                                  "bank (a tile per output and input channel).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the --png file.")] = False,
    as_json: JsonOpt = False,
    kernels_dir: KernelsDirOpt = None,
    trust_torchscript: TrustOpt = False,
) -> None:
    """Show a kernel: its weights (signs coloured), sum, range, zero-sum, separability; or a whole conv
    layer (a checkpoint's FILE:KEY, a featcli model's MODEL.safetensors:N): its shape, value range and
    each output channel's norm, and with --png its filter bank.

    A matrix that starts with a minus sign goes after --: featcli kernels show -- "-1 0 1; -2 0 2; -1 0 1"

    Example: featcli kernels show sobel:angle=45 --png sobel45.png

    Example: featcli kernels show model.safetensors:1 --png conv1.png
    """
    from featcli.kernels import expand
    from featcli.kernels.layers import ConvLayer, is_model_ref, model_layer
    from featcli.kernels.learned import split_ref

    if is_model_ref(ref):  # refused as run --model and eval refuse it: one validator of model files
        from featcli.engine.network import open_model

        opened = open_model(split_ref(ref)[0])
        _show_layer(model_layer(ref, opened.path, opened.meta, opened.tensors), png, force, as_json)
        return
    got = expand(ref, kernels_dir=kernels_dir, allow_torchscript=trust_torchscript)
    if not isinstance(got, list):
        _show_layer(ConvLayer(ref, got.path, got.key, got.weight, got.bias), png, force, as_json)
        return
    if png is not None:
        from featcli.render.kernel_figure import write_kernel_figure

        write_kernel_figure(got, png, force=force, inputs=[ref])
    if as_json:
        print_json(got[0].as_dict() if len(got) == 1 else [k.as_dict() for k in got])
    else:
        from rich.text import Text

        con = out_console()
        for i, k in enumerate(got):
            if i:
                con.print()
            con.print(Text(f"{k.name}  {k.shape[0]}x{k.shape[1]}  ({k.origin})", style="bold"))
            if k.description:
                con.print(Text(k.description))
            if max(k.shape) <= _MATRIX_LIMIT:
                con.print(_matrix_table(k))
            else:
                con.print(Text(f"({k.shape[0]}x{k.shape[1]} is too large to print; see --json or --png)"))
            con.print(_summary(k))
    if png is not None:
        err_console().print(f"wrote {png}", highlight=False, markup=False)


def _show_layer(layer: ConvLayer, png: str | None, force: bool, as_json: bool) -> None:
    """A conv layer: its summary (a table of output channels, the first :data:`_CHANNEL_ROWS`), and the
    filter bank picture with --png."""
    if png is not None:
        from featcli.io.outputs import check_output
        from featcli.io.png import save_png
        from featcli.render.bank import filter_bank

        check_output(png, force=force, inputs=[layer.path])
        image = filter_bank(layer.weight.numpy(), title=layer.title, in_labels=layer.in_labels)
        save_png(image, png, force=force, inputs=[layer.path])
    info = layer.summary()
    if as_json:
        print_json(info)
    else:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        o, i, kh, kw = info["shape"]
        where = (f"conv layer {layer.conv_index} of {layer.conv_count} · stage s{layer.stage_index} {layer.stage}"
                 if layer.stage is not None else "conv weight")
        inputs = f" · inputs {', '.join(layer.in_labels)}" if layer.in_labels else ""
        con = out_console()
        con.print(Text(f"{layer.ref}  {where}", style="bold"))
        con.print(Text(f"weight {o}x{i}x{kh}x{kw} ({o} filters of {i}x{kh}x{kw}) · "
                       f"{'bias ' + str(o) if layer.bias is not None else 'no bias'}{inputs}"))
        con.print(Text(f"values {_fmt4(info['min'])} … {_fmt4(info['max'])} · mean {_fmt4(info['mean'])} · "
                       f"mean |w| {_fmt4(info['mean_abs'])}"))
        table = Table(box=box.SIMPLE, pad_edge=False)
        for col in ("out", "L2 norm", "min", "max", "bias")[: 5 if layer.bias is not None else 4]:
            table.add_column(col, justify="right")
        for ch in info["channels"][:_CHANNEL_ROWS]:
            table.add_row(str(ch["out"]), _fmt4(ch["norm"]), _fmt4(ch["min"]), _fmt4(ch["max"]),
                          *([_fmt4(ch["bias"])] if ch["bias"] is not None else []))
        con.print(table)
        if o > _CHANNEL_ROWS:
            con.print(Text(f"(first {_CHANNEL_ROWS} of {o} output channels; --json lists all)", style="dim"))
    if png is not None:
        err_console().print(f"wrote {png}", highlight=False, markup=False)


def _fmt4(v: float) -> str:
    """A layer's number: 4 significant digits, no exponent for ordinary weights.

    >>> _fmt4(0.123456), _fmt4(-2.0), _fmt4(1.5e-07)
    ('0.1235', '-2', '1.5e-07')
    """
    return f"{v:.4g}"


@kernels_app.command("inspect")
def inspect_command(
    file: Annotated[str, typer.Argument(
        metavar="FILE", show_default=False, help="A checkpoint: .pt .pth .bin .ckpt .safetensors .npy .npz"
    )],
    all_tensors: Annotated[bool, typer.Option(
        "--all", "-a", help="List every tensor, with why it is not a conv weight.")] = False,
    as_json: JsonOpt = False,
    trust_torchscript: TrustOpt = False,
) -> None:
    """List the tensors of a checkpoint usable as conv weights: key, shape, dtype, value range.

    Use a key with featcli run -k FILE:KEY. Files are read with torch.load(weights_only=True), never
    running code from them; TorchScript only with --trust-torchscript.

    Example: featcli kernels inspect resnet18.pth
    """
    from featcli.kernels.learned import inspect_file

    infos = inspect_file(file, allow_torchscript=trust_torchscript, include_all=all_tensors)
    if as_json:
        print_json([i.as_dict() for i in infos])
        return
    if not infos:
        err_console().print(f"{file}: no tensor usable as a conv weight (--all lists every tensor)",
                            highlight=False, markup=False)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=str(file), title_justify="left")
    for col in ("key", "shape", "dtype", "min", "max", "use"):
        table.add_column(col, justify="right" if col in ("min", "max") else "left",
                         no_wrap=col in ("key", "shape", "dtype"))
    for i in infos:
        table.add_row(Text(i.key or "(the tensor)"), "x".join(map(str, i.shape)) or "scalar", i.dtype,
                      "" if i.min is None else f"{i.min:.4g}", "" if i.max is None else f"{i.max:.4g}",
                      Text(i.note, style="" if i.usable else "dim"))
    out_console().print(table)
