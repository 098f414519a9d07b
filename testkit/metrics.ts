/**
 * Reading the proxy's Prometheus text in tests: the sum of a metric's samples whose labels include
 * every pair asked for. Other labels (instance, worker, listener) never make a lookup miss.
 */
export function metricValue(text: string, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    let labelText = '';
    if (rest.startsWith('{')) labelText = rest.slice(1, rest.indexOf('}'));
    else if (!rest.startsWith(' ')) continue; // another metric whose name starts with this one
    const pairs = labelText.split(/,(?=[a-zA-Z_]+=")/);
    if (labels.every((l) => pairs.includes(l))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
