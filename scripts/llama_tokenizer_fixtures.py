"""Record llama.cpp's token ids for wgllm's tokenizer tests (tests/model/data/llama_cpp_tokenizer.json).

llama.cpp itself is the reference: this script writes the vocabularies of
tests/model/llama_cpp_vocabs.py to GGUF files (one byte-level BPE file per
pre-tokenizer name llama.cpp knows, gemma4-style raw UTF-8 files, SentencePiece
files trained here with the sentencepiece library), adds the real SmolLM2 and
Gemma 3 files from the model cache when present, and asks llama.cpp (through
llama-cpp-python, vocab_only) for the ids of every case. The tests then compare
wgllm against the recorded ids, so CI needs no llama.cpp build.

Regenerate (llama-cpp-python's build takes 5-10 minutes, once):

    python3 -m venv /tmp/llvenv
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
        -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF" \\
        /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36
    python3 scripts/llama_tokenizer_fixtures.py --llama-python /tmp/llvenv/bin/python \\
        --unicode-data /path/to/llama.cpp/src/unicode-data.cpp

(--unicode-data records llama.cpp's Unicode tables, which the tests compare with
wgllm's; without it the fixture's copy is kept. llama-cpp-python's sdist vendors
the llama.cpp source: `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`.)

Check that wgllm's pre-tokenizer tables equal a llama.cpp source tree's (the one
llama-cpp-python vendors, or e.g. an extracted release tarball):

    python3 scripts/llama_tokenizer_fixtures.py --check-tables /path/to/llama.cpp/src/llama-vocab.cpp

Run it with the project's Python (it needs wgllm, gguf, numpy and sentencepiece);
--llama-python is the interpreter that has llama_cpp.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.model import llama_cpp_vocabs as V  # noqa: E402

OUT = ROOT / "tests" / "model" / "data" / "llama_cpp_tokenizer.json"
LLAMA_CPP_PYTHON = "0.3.36"
UNKNOWN_NAMES = ["gpt2", "no-such-pre"]  # llama.cpp refuses both (wgllm accepts 'gpt2' as 'gpt-2')

WORKER = r"""
import json, sys
import llama_cpp
jobs = json.load(open(sys.argv[1]))
out = {}
for key, path, cases in jobs:
    try:
        m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    except Exception as exc:
        out[key] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    out[key] = {"ids": [m.tokenize(t.encode(), add_bos=a, special=p) for t, a, p in cases]}
    del m
json.dump({"version": llama_cpp.__version__, "results": out}, open(sys.argv[2], "w"))
"""

SPM_CORPUS = V.TEXTS + [
    "The quick brown fox jumps over the lazy dog. Hello world, hello there! This is a test of the tokenizer.",
    "I'm sure they'll say it's fine; don't you think? We've seen it, you're right, he'd go, she'll come.",
    "def main():\n    return 42\n\nclass Foo:\n\tpass\n\nfor i in range(10):\n    print(i)\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 1,000,000 and more numbers.",
    "日本語のテキストです。中文测试，你好世界。한국어 텍스트입니다. Emoji 🤖👍🏽 ❤️ done.",
    "Café naïve résumé façade; MiXeD CaSe camelCaseWord HTTPServer discards discarded cards.",
] * 3


def train_spm(vocab_size: int = 700) -> list[list]:
    """A llama-2 style SentencePiece BPE vocabulary (byte fallback, split digits): [[piece, score, type]]."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, user_defined_symbols=["<tool>"],
        control_symbols=["<|im_start|>", "<|im_end|>", "<|endoftext|>"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        num_threads=1, character_coverage=1.0, hard_vocab_limit=False, allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    proto = pb.ModelProto()
    proto.ParseFromString(model.getvalue())
    return [[p.piece, p.score, p.type] for p in proto.pieces]


def hand_spm() -> list[list]:
    """The hand-made SentencePiece vocabulary of tests/model/test_tokenizer.py."""
    from tests.model.test_tokenizer import _spm_pieces

    return [list(p) for p in _spm_pieces()]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def real_files() -> dict[str, Path]:
    from wgllm import hub

    found = {}
    for key, name in (("real:smollm2", "smollm2-135m"), ("real:gemma3", "gemma3-270m")):
        path = hub.cache_dir() / hub.registry_entry(name).filename
        if path.is_file():
            found[key] = path
    return found


def _worker(python: str, tmp: Path, jobs: list) -> dict | None:
    """Run WORKER on `jobs` in a fresh process; None if llama.cpp aborted it."""
    job_file, out = tmp / "jobs.json", tmp / "out.json"
    job_file.write_text(json.dumps(jobs))
    out.unlink(missing_ok=True)
    done = subprocess.run([python, str(tmp / "worker.py"), str(job_file), str(out)], capture_output=True)
    return json.loads(out.read_text()) if done.returncode == 0 else None


def run_llama(python: str, files: dict[str, Path]) -> dict:
    """{"version", "results": {key: {"ids": [...]} | {"error": ...}}}; a case llama.cpp aborts on
    (GGML_ASSERT) gets the id list ["abort"]."""
    cases = [list(c) for c in V.CASES]
    results, version = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "worker.py").write_text(WORKER)
        for key, path in files.items():
            got = _worker(python, Path(tmp), [[key, str(path), cases]])
            if got is None:  # find the cases that abort, one process each
                ids = []
                for case in cases:
                    one = _worker(python, Path(tmp), [[key, str(path), [case]]])
                    ids.append(one["results"][key]["ids"][0] if one else ["abort"])
                got = {"version": version, "results": {key: {"ids": ids}}}
                print(f"{key}: llama.cpp aborts on {ids.count(['abort'])} cases")
            version = version or got["version"]
            results.update(got["results"])
    return {"version": version, "results": results}


def unicode_tables(path: Path | None) -> dict:
    """llama.cpp's codepoint flag ranges and whitespace set from unicode-data.cpp (else the fixture's)."""
    if path is None:
        return json.loads(OUT.read_text())["unicode"] if OUT.is_file() else {}
    src = path.read_text(encoding="utf-8")
    body = src.split("unicode_ranges_flags = {")[1].split("};")[0]
    ranges = [[int(a, 16), int(b, 16)] for a, b in re.findall(r"\{0x([0-9A-Fa-f]+), 0x([0-9A-Fa-f]+)\}", body)]
    spaces = src.split("unicode_set_whitespace = {")[1].split("};")[0]
    return {"ranges": ranges, "whitespace": [int(x, 16) for x in re.findall(r"0x([0-9A-Fa-f]+)", spaces)]}


def generate(python: str, unicode_data: Path | None) -> None:
    from wgllm.model.tokenizer import PRE_TOKENIZERS

    names = sorted(n for n in PRE_TOKENIZERS if n != "gpt2") + UNKNOWN_NAMES + [None]
    pieces = {"trained": train_spm(), "hand": hand_spm()}
    with tempfile.TemporaryDirectory() as tmp:
        files = {**V.bpe_files(Path(tmp), names), **V.spm_files(Path(tmp), pieces), **real_files()}
        got = run_llama(python, files)
        identity = {k: {"file": p.name, "sha256": sha256(p)} for k, p in files.items() if k.startswith("real:")}
    assert got["version"] == LLAMA_CPP_PYTHON, got["version"]
    outputs: list[list] = []
    results = {}
    for key, res in got["results"].items():
        if "ids" in res:
            if res["ids"] not in outputs:
                outputs.append(res["ids"])
            res = {"output": outputs.index(res["ids"])}
        results[key] = {**res, **identity.get(key, {})}
    tokens, types, merges = V.byte_bpe_vocab()
    raw = V.raw_bpe_vocab()
    fixture = {
        "about": {
            "what": "llama.cpp's token ids (llama_tokenize via llama-cpp-python, vocab_only) for the cases below",
            "generator": "python3 scripts/llama_tokenizer_fixtures.py --llama-python /tmp/llvenv/bin/python",
            "llama_cpp_python": got["version"],
            "date": datetime.date.today().isoformat(),
            "bpe_vocab": V.vocab_digest(tokens, types, merges),
            "raw_vocab": V.vocab_digest(*raw),
            "substring_max": V.SUBSTRING_MAX,
        },
        "cases": [list(c) for c in V.CASES],
        "spm_pieces": pieces,
        "results": results,
        "outputs": outputs,
        "unicode": unicode_tables(unicode_data),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}: {len(results)} files, {len(V.CASES)} cases each, {len(outputs)} distinct outputs")


def check_tables(vocab_cpp: Path) -> int:
    """Compare PRE_TOKENIZERS / regex lists with llama-vocab.cpp; print differences, return their count."""
    from wgllm.model.tokenizer import PRE_TOKENIZERS

    names, types = parse_llama_vocab(vocab_cpp.read_text(encoding="utf-8"))
    problems = []
    for name, (pre_type, flags) in names.items():
        ours = PRE_TOKENIZERS.get(name)
        if ours is None or ours.type != pre_type or ours.flags != flags:
            problems.append(f"name {name!r}: llama.cpp {pre_type} {sorted(flags)}, wgllm {ours}")
    for name in set(PRE_TOKENIZERS) - set(names) - {"gpt2"}:
        problems.append(f"name {name!r} is not in llama.cpp")
    for name, ours in PRE_TOKENIZERS.items():
        want = types.get(ours.type, types["DEFAULT"])
        if (list(ours.regexes), ours.byte_encode) != want:
            problems.append(f"type {ours.type} ({name}): regexes or byte encoding differ")
    print("\n".join(sorted(set(problems))) or f"tables match ({len(names)} names, {len(types)} types)")
    return len(set(problems))


def _strip_comments(src: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|//[^\n]*', lambda m: m.group(0) if m.group(0)[0] == '"' else "", src)


def _literals(text: str) -> list[str]:
    escapes = {"\\": "\\", '"': '"', "'": "'", "r": "\r", "n": "\n", "t": "\t"}
    return [re.sub(r"\\(.)", lambda e: escapes[e.group(1)], m) for m in re.findall(r'"((?:[^"\\]|\\.)*)"', text)]


def parse_llama_vocab(src: str) -> tuple[dict, dict]:
    """({name: (type, flags)}, {type: ([regexes], byte_encode)}) from llama-vocab.cpp's source."""
    src = _strip_comments(src)
    ctor = src[src.index("llm_tokenizer_bpe(const llama_vocab & vocab) {"):src.index("std::vector<std::string> regex_exprs;")]
    types = {}
    for block in ctor.split("break;"):
        cases = re.findall(r"case LLAMA_VOCAB_PRE_TYPE_(\w+):", block) + (["DEFAULT"] if "default:" in block else [])
        exprs = re.search(r"regex_exprs = \{(.*?)\};", block, re.S)
        for case in cases if exprs else []:
            types[case] = (_literals(exprs.group(1)), "byte_encode = false" not in block)
    load = src[src.index('tokenizer_pre == "default"') - 200:src.index("unknown pre-tokenizer type")]
    names = {}
    for m in re.finditer(r"if \(((?:\s*tokenizer_pre == \"[^\"]+\"\s*\|*\s*)+)\)\s*\{(.*?)\}", load, re.S):
        pre_type = re.search(r"pre_type = LLAMA_VOCAB_PRE_TYPE_(\w+);", m.group(2))
        flags = set(re.findall(r"(ignore_merges|add_bos|escape_whitespaces|add_sep) = true", m.group(2)))
        flags |= {"no_bos"} if "special_bos_id = LLAMA_TOKEN_NULL" in m.group(2) else set()
        for name in re.findall(r'tokenizer_pre == "([^"]+)"', m.group(1)):
            names[name] = (pre_type.group(1), frozenset(flags))
    return names, types


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-python", default="/tmp/llvenv/bin/python", help="a Python with llama_cpp installed")
    ap.add_argument("--check-tables", type=Path, metavar="LLAMA_VOCAB_CPP", help="only compare the tables")
    ap.add_argument("--unicode-data", type=Path, metavar="UNICODE_DATA_CPP",
                    help="llama.cpp's src/unicode-data.cpp, to record its tables (default: keep the fixture's)")
    args = ap.parse_args()
    if args.check_tables:
        return 1 if check_tables(args.check_tables) else 0
    generate(args.llama_python, args.unicode_data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
