#!/usr/bin/env python3
"""lockstep's CUDA emulator (docs/cuda_emulation.md): a .cu/.cuh file as host C++.

Every `name<<<grid, block[, shared[, stream]]>>>(args)` becomes
`::lockstep_emu::launch("name", [](auto... a_) { name(a_...); }, grid, block...)(args)`, and
each `__shared__ T name[N];` is followed (on the same line) by a call that fills the array with
0xff bytes when the first thread of a block reaches it (a GPU's shared memory starts undefined;
without this a block would see what the previous block left), and the file starts with the
emulator's device header. Line numbers are kept (#line names the
original file), so compiler messages and backtraces point into the .cu source.

usage: translate_cu.py INPUT OUTPUT
"""
import re
import sys


def kernel_name_start(text, end):
    """Start of the kernel expression ending just before `end` (an identifier, optionally
    qualified, optionally with template arguments)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == '>':  # template arguments: match the angle brackets
        depth = 0
        while i > 0:
            i -= 1
            if text[i] == '>':
                depth += 1
            elif text[i] == '<':
                depth -= 1
                if depth == 0:
                    break
        while i > 0 and text[i - 1].isspace():
            i -= 1
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in '_:'):
        i -= 1
    return i


def translate(text, path):
    out = []
    pos = 0
    for match in re.finditer(r'<<<', text):
        start = match.start()
        if start < pos:
            continue
        name_at = kernel_name_start(text, start)
        name = text[name_at:start].strip()
        if not name or not (name[0].isalpha() or name[0] in '_:'):
            sys.exit(f'{path}: cannot find the kernel before <<< at offset {start}')
        close = text.find('>>>', match.end())
        if close < 0:
            sys.exit(f'{path}: <<< without >>> at offset {start}')
        config = text[match.end():close]
        plain = re.sub(r'\s+', ' ', name)
        out.append(text[pos:name_at])
        out.append(f'::lockstep_emu::launch("{plain}", [](auto... a_) {{ {plain}(a_...); }}, '
                   f'{config})')
        pos = close + 3
    out.append(text[pos:])
    return ''.join(out)


SHARED = re.compile(r'__shared__\s+[\w:<>, ]+?\s+(\w+)\s*(?:\[[^\];]*\]\s*)*;')


def fresh_shared(text, path):
    """Appends ::lockstep_emu::fresh_shared(&name, sizeof(name)) to every __shared__ declaration."""
    lines = text.split('\n')
    for n, line in enumerate(lines):
        code = re.sub(r'"(?:\\.|[^"\\])*"', '""', line).split('//')[0]  # no strings, comments
        if '__shared__' not in code or code.lstrip().startswith('#'):
            continue
        match = SHARED.search(line) if SHARED.search(code) else None
        if match is None or 'extern' in line[:match.start()]:
            sys.exit(f'{path}:{n + 1}: the emulator supports `__shared__ T name[N];` on one line '
                     f'(no extern/dynamic shared memory): {line.strip()}')
        name = match.group(1)
        lines[n] = (line[:match.end()] + f' ::lockstep_emu::fresh_shared(&{name}, sizeof({name}));'
                    + line[match.end():])
    return '\n'.join(lines)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding='utf-8') as f:
        text = f.read()
    body = fresh_shared(translate(text, src), src)
    header = '#include "lockstep_emu/device.h"\n'
    with open(dst, 'w', encoding='utf-8') as f:
        f.write(header + f'#line 1 "{src}"\n' + body)


if __name__ == '__main__':
    main()
