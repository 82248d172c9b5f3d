package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot writes latency.png, latency.svg, throughput.png and throughput.svg
// into dir: one horizontal bar per available row on a logarithmic axis,
// median latency with its p90 and p99 marked, and throughput. Unavailable
// rows are left out (the table lists them).
func (rep *Report) Plot(dir string) error {
	var ok []RowResult
	for _, r := range rep.Rows {
		if r.OK() {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return fmt.Errorf("bench: no row has a result to plot")
	}
	lat := &hbars{color: color.RGBA{R: 0x3b, G: 0x6e, B: 0xa5, A: 0xff}}
	tput := &hbars{color: color.RGBA{R: 0xd9, G: 0x7a, B: 0x2b, A: 0xff}}
	var names []string
	for i := range ok {
		r := ok[len(ok)-1-i] // first row at the top
		names = append(names, r.Name)
		ms := func(d interface{ Nanoseconds() int64 }) float64 { return float64(d.Nanoseconds()) / 1e6 }
		lat.vals = append(lat.vals, ms(r.Latency.Median))
		lat.marks = append(lat.marks, []float64{ms(r.Latency.P90), ms(r.Latency.P99)})
		lat.labels = append(lat.labels, fmt.Sprintf("%s (p99 %s)", FormatDuration(r.Latency.Median), FormatDuration(r.Latency.P99)))
		tput.vals = append(tput.vals, r.Throughput)
		tput.marks = append(tput.marks, nil)
		tput.labels = append(tput.labels, FormatRate(r.Throughput)+"/s")
	}
	sub := fmt.Sprintf("%d CPUs, tender %s backend, echo of %d bytes", rep.Machine.NumCPU, rep.Backend, len(rep.Payload))
	for _, f := range []struct {
		name, title, xlabel string
		bars                *hbars
		legend              bool
	}{
		{"latency", "Latency of one request, start to completion\n(median; marks at p90 and p99)", "milliseconds (log scale)", lat, true},
		{"throughput", fmt.Sprintf("Throughput, %d concurrent requesters", rep.Concurrency), "requests per second (log scale)", tput, false},
	} {
		p := plot.New()
		p.Title.Text = f.title + "\n" + sub
		p.X.Label.Text = f.xlabel
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{}
		p.Add(f.bars)
		p.NominalY(names...)
		p.Y.Padding = 0
		if f.legend {
			p.Legend.Add("median", barThumb{f.bars.color})
			p.Legend.Add("p90", markThumb{markStyles[0]})
			p.Legend.Add("p99", markThumb{markStyles[1]})
			p.Legend.Top = false
			p.Legend.Left = false
			p.Legend.XOffs = -vg.Points(14)
			p.Legend.TextStyle.Font.Size = font.Length(10)
			p.Legend.YOffs = vg.Points(4)
		}
		w, h := 9*vg.Inch, vg.Length(1.6+0.42*float64(len(names)))*vg.Inch
		if err := save(p, w, h, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// save writes p as base.png (150 dpi) and base.svg, with a margin.
func save(p *plot.Plot, w, h vg.Length, base string) error {
	margin := vg.Points(8)
	png := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(150))
	svg := vgsvg.New(w, h)
	for _, out := range []struct {
		c    vg.CanvasWriterTo
		path string
	}{{vgimg.PngCanvas{Canvas: png}, base + ".png"}, {svg, base + ".svg"}} {
		dc := draw.New(out.c)
		dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
		p.Draw(draw.Crop(dc, margin, -margin, margin, -margin))
		f, err := os.Create(out.path)
		if err != nil {
			return err
		}
		if _, err := out.c.WriteTo(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// hbars draws horizontal bars from the left edge of the data area, at y = 0,
// 1, ...: bar i is vals[i] long, with vertical marks at marks[i] and the text
// labels[i] after its end.
type hbars struct {
	vals   []float64
	marks  [][]float64
	labels []string
	color  color.Color
}

// markStyles draw the p90 and p99 marks.
var markStyles = []draw.LineStyle{
	{Color: color.Black, Width: vg.Points(1.5)},
	{Color: color.RGBA{R: 0xc0, A: 0xff}, Width: vg.Points(1.5), Dashes: []vg.Length{vg.Points(2), vg.Points(1.5)}},
}

// DataRange leaves room on the right for the labels.
func (b *hbars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for i, v := range b.vals {
		for _, x := range append([]float64{v}, b.marks[i]...) {
			if x > 0 {
				xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			}
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 1, 10
	}
	// Start at a decade boundary well below the shortest bar, end far
	// enough right for the labels.
	lo := math.Pow(10, math.Floor(math.Log10(xmin/2)))
	xmax = math.Pow(10, math.Log10(xmax)+0.25*math.Log10(xmax/xmin)+0.3)
	return lo, xmax, -0.6, float64(len(b.vals)) - 0.4
}

// Plot draws the bars.
func (b *hbars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	half := (trY(0.35) - trY(0)) // half a bar's thickness
	label := plt.Y.Tick.Label
	label.XAlign, label.YAlign = draw.XLeft, draw.YCenter
	label.Font.Size = font.Length(9)
	for i, v := range b.vals {
		if v <= 0 {
			continue
		}
		y := trY(float64(i))
		x0, x1 := c.Min.X, trX(v)
		c.FillPolygon(b.color, []vg.Point{{X: x0, Y: y - half}, {X: x1, Y: y - half}, {X: x1, Y: y + half}, {X: x0, Y: y + half}})
		end := x1
		for j, m := range b.marks[i] {
			if m <= 0 {
				continue
			}
			x := trX(m)
			c.StrokeLine2(markStyles[j%len(markStyles)], x, y-half*1.3, x, y+half*1.3)
			end = max(end, x)
		}
		c.FillText(label, vg.Point{X: end + vg.Points(5), Y: y}, b.labels[i])
	}
}

type barThumb struct{ color color.Color }

// Thumbnail draws a filled square for the legend.
func (t barThumb) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(t.color, []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y}})
}

type markThumb struct{ style draw.LineStyle }

// Thumbnail draws a vertical mark for the legend.
func (t markThumb) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(t.style, x, c.Min.Y, x, c.Max.Y)
}

// logTicks labels each power of ten of a log axis, with minor ticks between.
type logTicks struct{}

// Ticks returns the ticks between lo and hi.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for k := 1; k < 10; k++ {
			v := float64(k) * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if k == 1 {
				t.Label = trimFloat(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
