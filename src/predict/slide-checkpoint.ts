/**
 * A slide prediction's checkpoint: each finished region's per-tile values in one small file,
 * written whole then renamed, so a run stopped midway continues where it was. The file's layout
 * is declared once (`sections`): named blocks of float32 back to back, each one row of `width`
 * values per tile (or, `perRegion`, `width` values for the whole region: a sum over its tiles);
 * a file of any other length (another model, another set of measures) is not taken and its
 * region is computed again.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface CheckpointSection {
  name: string;
  /** Values per tile, or per region with `perRegion`. */
  width: number;
  perRegion?: boolean;
}

const valuesOf = (section: CheckpointSection, tiles: number): number =>
  section.perRegion ? section.width : section.width * tiles;

export class RegionCheckpoint {
  constructor(
    readonly dir: string,
    readonly sections: readonly CheckpointSection[],
  ) {
    mkdirSync(dir, { recursive: true });
  }

  #file(key: string): string {
    return path.join(this.dir, `${key.replace(',', '_')}.f32`);
  }

  /** A region's sections, by name, when its file is there and of this layout. */
  load(key: string, tiles: number): Map<string, Float32Array> | undefined {
    const file = this.#file(key);
    if (!existsSync(file)) return undefined;
    const bytes = readFileSync(file);
    const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const total = this.sections.reduce((n, s) => n + valuesOf(s, tiles), 0);
    if (values.length !== total) return undefined;
    const out = new Map<string, Float32Array>();
    let offset = 0;
    for (const section of this.sections) {
      const n = valuesOf(section, tiles);
      out.set(section.name, values.slice(offset, offset + n));
      offset += n;
    }
    return out;
  }

  /** A region's sections, each `tiles x width` values (`width` per region), in the layout's order. */
  save(key: string, sections: ReadonlyMap<string, Float32Array>): void {
    const parts = this.sections.map(({ name }) => {
      const part = sections.get(name);
      if (!part) throw new RangeError(`the checkpoint section '${name}' is missing`);
      return Buffer.from(part.buffer, part.byteOffset, part.byteLength);
    });
    const file = this.#file(key);
    writeFileSync(`${file}.tmp`, Buffer.concat(parts));
    renameSync(`${file}.tmp`, file);
  }
}
