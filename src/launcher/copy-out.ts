// `airlock run --copy --copy-out DIR`: the container's /workspace, as the archive Docker gives,
// written into DIR on the host.
import { extract } from 'tar-fs';

/** Writes the tar `archive` into `dest`. */
export async function copyOut(archive: NodeJS.ReadableStream, dest: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const sink = extract(dest);
    sink.on('finish', () => resolve());
    sink.on('error', reject);
    archive.on('error', reject);
    archive.pipe(sink);
  });
}
