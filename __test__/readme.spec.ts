/**
 * The README's TypeScript is tested: every ```ts block is extracted into an ES module (`from 'netvsc'` pointed at
 * this checkout), all of them are compiled with tsc (nodenext, strict), and each one is run with node (against the
 * emulator; a block whose introducing line says *compile-only* is only compiled). A run must exit 0 by itself.
 */
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as netvsc from '../src/index.js'
import { repo, scratchDir } from './helpers.js'

interface Block {
  line: number
  code: string
  compileOnly: boolean
}

function blocks(): Block[] {
  const lines = fs.readFileSync(path.join(repo, 'README.md'), 'utf8').split('\n')
  const out: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== '```ts') continue
    let intro = ''
    for (let j = i - 1; j >= 0 && intro === ''; j--) intro = lines[j]?.trim() ?? ''
    const start = i + 1
    let end = start
    while (end < lines.length && lines[end]?.trim() !== '```') end++
    out.push({ line: start, code: lines.slice(start, end).join('\n'), compileOnly: /compile-only/.test(intro) })
    i = end
  }
  return out
}

const all = blocks()
const dir = scratchDir('readme')
// tsc checks the blocks against the sources' types; at run time they import an ES module re-exporting the CommonJS
// sources by name, as the package's dist/index.mjs does for the built files.
const shim = path.join(dir, 'netvsc.mjs')
fs.writeFileSync(
  shim,
  `import m from ${JSON.stringify(path.join(repo, 'src/index.ts'))}\n` +
    Object.keys(netvsc)
      .filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k))
      .map((k) => `export const ${k} = m.${k}\n`)
      .join(''),
)
const files = all.map((b) => {
  const f = path.join(dir, `block-${b.line}.mts`)
  fs.writeFileSync(f, `${b.code.replaceAll("from 'netvsc'", `from ${JSON.stringify(path.join(repo, 'src/index.js'))}`)}\n`)
  fs.writeFileSync(f.replace(/\.mts$/, '.run.mts'), `${b.code.replaceAll("from 'netvsc'", `from ${JSON.stringify(shim)}`)}\n`)
  return f
})

test('the README has TypeScript blocks, at least one of them runnable', (t) => {
  t.true(all.length >= 3)
  t.true(all.some((b) => !b.compileOnly))
})

test('every README TypeScript block compiles (tsc, module nodenext, strict)', (t) => {
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      extends: path.join(repo, 'tsconfig.json'),
      compilerOptions: { typeRoots: [path.join(repo, 'node_modules/@types')], lib: ['es2023', 'esnext.disposable'] },
      files: [...files, path.join(repo, 'binding.d.ts')],
    }),
  )
  const r = spawnSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', dir], { encoding: 'utf8', cwd: repo })
  t.is(r.status, 0, r.stdout + r.stderr)
})

for (const [i, b] of all.entries()) {
  if (b.compileOnly) continue
  test.serial(`README block at line ${b.line} runs and exits 0 by itself`, async (t) => {
    const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const c = spawn(process.execPath, ['--import', 'tsx', (files[i] ?? '').replace(/\.mts$/, '.run.mts')], { cwd: repo })
      let out = ''
      let err = ''
      c.stdout.on('data', (d: Buffer) => (out += d.toString()))
      c.stderr.on('data', (d: Buffer) => (err += d.toString()))
      const timer = setTimeout(() => c.kill('SIGKILL'), 60_000)
      c.on('close', (code) => {
        clearTimeout(timer)
        resolve({ code, out, err })
      })
    })
    t.is(r.code, 0, r.err)
    t.log(r.out.trim().split('\n').slice(0, 3).join('\n'))
  })
}
