// Builds the editor into ../assets/editor, where `nncards serve` serves it at `/` (server/app.py).
// Relative URLs (base './') keep it working behind a path prefix. The chunks go to `app/`, not
// Vite's default `assets/`: the server mounts the repository's own `assets/` folder at `/assets`.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "../assets/editor",
    emptyOutDir: true,
    assetsDir: "app",
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8000" } },
});
