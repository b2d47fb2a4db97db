// gliorad slice viewer: axial, coronal and sagittal slices of uint8 volumes in LPS voxel order
// (index = (z * ny + y) * nx + x; x towards the patient's left, y posterior, z superior) with a
// label mask over them. Radiological display: the patient's left on the right of the screen,
// anterior up on axial slices, superior up on coronal and sagittal ones.
"use strict";

const GLIORAD_LABEL_COLOURS = {1: [255, 50, 50], 2: [40, 220, 60], 3: [60, 120, 255],
                               4: [255, 215, 0]};

class SliceViewer {
  // meta: viewer.json (shape [nz, ny, nx], spacing [sx, sy, sz], centre [z, y, x]);
  // volumes: {sequence: Uint8Array}; mask: Uint8Array.
  constructor(meta, volumes, mask, canvases, sliders, labels) {
    this.meta = meta;
    [this.nz, this.ny, this.nx] = meta.shape;
    [this.sx, this.sy, this.sz] = meta.spacing;
    this.volumes = volumes;
    this.mask = mask;
    this.sequence = meta.sequences[0];
    this.overlay = true;
    this.opacity = 0.45;
    this.canvases = canvases;
    this.sliders = sliders;
    this.labels = labels;
    this.pos = {z: meta.centre[0], y: meta.centre[1], x: meta.centre[2]};
    this.views = {
      // w, h: the slice's pixels; voxel(c, r): the voxel index shown at column c, row r
      axial: {axis: "z", n: this.nz, w: this.nx, h: this.ny, cw: this.sx, ch: this.sy,
              voxel: (c, r, k) => (k * this.ny + r) * this.nx + c,
              point: (c, r) => ({x: c, y: r})},
      coronal: {axis: "y", n: this.ny, w: this.nx, h: this.nz, cw: this.sx, ch: this.sz,
                voxel: (c, r, k) => ((this.nz - 1 - r) * this.ny + k) * this.nx + c,
                point: (c, r) => ({x: c, z: this.nz - 1 - r})},
      sagittal: {axis: "x", n: this.nx, w: this.ny, h: this.nz, cw: this.sy, ch: this.sz,
                 voxel: (c, r, k) => ((this.nz - 1 - r) * this.ny + c) * this.nx + k,
                 point: (c, r) => ({y: c, z: this.nz - 1 - r})},
    };
    for (const [name, v] of Object.entries(this.views)) {
      const canvas = canvases[name];
      const scale = 300 / Math.max(v.w * v.cw, v.h * v.ch);
      canvas.width = Math.max(1, Math.round(v.w * v.cw * scale));
      canvas.height = Math.max(1, Math.round(v.h * v.ch * scale));
      v.buffer = document.createElement("canvas");
      v.buffer.width = v.w;
      v.buffer.height = v.h;
      const slider = sliders[name];
      slider.min = 0;
      slider.max = v.n - 1;
      slider.addEventListener("input", () => { this.pos[v.axis] = Number(slider.value); this.draw(name); });
      canvas.addEventListener("wheel", (ev) => {
        ev.preventDefault();
        this.move(name, ev.deltaY > 0 ? -1 : 1);
      }, {passive: false});
      canvas.addEventListener("click", (ev) => {
        const rect = canvas.getBoundingClientRect();
        const c = Math.floor((ev.clientX - rect.left) / rect.width * v.w);
        const r = Math.floor((ev.clientY - rect.top) / rect.height * v.h);
        Object.assign(this.pos, v.point(Math.min(v.w - 1, Math.max(0, c)),
                                        Math.min(v.h - 1, Math.max(0, r))));
        this.drawAll();
      });
    }
  }

  move(name, step) {
    const v = this.views[name];
    this.pos[v.axis] = Math.min(v.n - 1, Math.max(0, this.pos[v.axis] + step));
    this.draw(name);
  }

  setSequence(seq) { this.sequence = seq; this.drawAll(); }
  setOverlay(on) { this.overlay = on; this.drawAll(); }
  setOpacity(a) { this.opacity = a; this.drawAll(); }

  drawAll() { for (const name of Object.keys(this.views)) this.draw(name); }

  draw(name) {
    const v = this.views[name];
    const k = this.pos[v.axis];
    const vol = this.volumes[this.sequence];
    const ctx = v.buffer.getContext("2d");
    const img = ctx.createImageData(v.w, v.h);
    const px = img.data;
    const a = this.overlay ? this.opacity : 0;
    let tumour = 0;
    for (let r = 0; r < v.h; r++) {
      for (let c = 0; c < v.w; c++) {
        const i = v.voxel(c, r, k);
        const g = vol[i];
        const o = (r * v.w + c) * 4;
        const lab = this.mask[i];
        if (lab && a > 0) {
          const col = GLIORAD_LABEL_COLOURS[lab] || [255, 0, 255];
          px[o] = g * (1 - a) + col[0] * a;
          px[o + 1] = g * (1 - a) + col[1] * a;
          px[o + 2] = g * (1 - a) + col[2] * a;
        } else {
          px[o] = px[o + 1] = px[o + 2] = g;
        }
        if (lab) tumour++;
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    const canvas = this.canvases[name];
    const out = canvas.getContext("2d");
    out.imageSmoothingEnabled = false;
    out.drawImage(v.buffer, 0, 0, canvas.width, canvas.height);
    // cross-hair of the other two views' slices
    const cross = v.axis === "z" ? [this.pos.x, this.pos.y]
      : v.axis === "y" ? [this.pos.x, this.nz - 1 - this.pos.z] : [this.pos.y, this.nz - 1 - this.pos.z];
    out.strokeStyle = "rgba(80, 200, 255, 0.5)";
    out.lineWidth = 1;
    const cx = (cross[0] + 0.5) * canvas.width / v.w;
    const cy = (cross[1] + 0.5) * canvas.height / v.h;
    out.beginPath();
    out.moveTo(cx, 0); out.lineTo(cx, canvas.height);
    out.moveTo(0, cy); out.lineTo(canvas.width, cy);
    out.stroke();
    this.sliders[name].value = k;
    this.labels[name].textContent = `${k + 1} / ${v.n}` + (tumour ? ` (tumour: ${tumour} voxels)` : "");
    canvas.dataset.slice = String(k);
    canvas.dataset.tumourVoxels = String(tumour);
    canvas.dataset.sequence = this.sequence;
  }
}

window.SliceViewer = SliceViewer;
