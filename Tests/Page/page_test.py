"""The page of `diffuse serve` in a real browser: Debian's chromium, headless, driven by Playwright (its own browser
download is not needed: `executable_path` points at chromium). Loads the page, generates from a run, waits for the
image to join the gallery, changes the settings, clicks the image and checks that its settings came back; then opens
the Training tab and checks the run's loss curve and sample grid. Screenshots of both tabs go to --screenshots.

Usage:  python page_test.py --url http://127.0.0.1:PORT --model runs/NAME --chromium /usr/bin/chromium --screenshots DIR
Exit status 0 when every check passes; each failed check is printed.
"""
import argparse
import pathlib
import sys

from playwright.sync_api import expect, sync_playwright


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    out = pathlib.Path(args.screenshots)
    out.mkdir(parents=True, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.on("pageerror", lambda e: errors.append(f"JavaScript error: {e}"))
        page.goto(args.url)
        expect(page.locator(f"#model option[value='{args.model}']")).to_have_count(1, timeout=10_000)
        page.select_option("#model", args.model)
        page.fill("#steps", "12")
        page.fill("#seed", "7")
        page.fill("#count", "16")
        before = page.locator("#gallery figure").count()
        page.click("#generate-button")
        expect(page.locator("#progress-text")).to_have_text("Done.", timeout=60_000)
        expect(page.locator("#gallery figure")).to_have_count(before + 1, timeout=10_000)
        expect(page.locator("#result-images img")).to_have_count(1)

        # Other settings, then the gallery's newest image restores its own.
        page.fill("#steps", "3")
        page.fill("#seed", "99")
        page.locator("#gallery figure").first.click()
        for field, value in [("#model", args.model), ("#steps", "12"), ("#seed", "7")]:
            actual = page.input_value(field)
            if actual != value:
                errors.append(f"{field} restored as {actual!r}, not {value!r}")
        page.screenshot(path=str(out / "generate.png"))

        page.click("#tab-training")
        run = args.model.split("/", 1)[1]
        page.locator("#runs tbody tr", has_text=run).first.click()
        expect(page.locator("#run-title")).to_have_text(run, timeout=10_000)
        expect(page.locator("#run-grid")).to_be_visible(timeout=10_000)
        if "step" not in page.locator("#run-config").inner_text():
            errors.append("the run's configuration is not shown")
        page.screenshot(path=str(out / "training.png"))
        browser.close()
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
