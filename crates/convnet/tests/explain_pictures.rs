//! The pictures of `explain`: the sliding-kernel animation of the design notes' worked
//! example, decoded back from the GIF.

use convnet::explain::{conv_animation, parse_matrix, work_conv, ExplainPadding, HIGHLIGHT};
use image::AnimationDecoder;

fn worked_example(padding: ExplainPadding) -> convnet::explain::ConvAnimation {
    let input = parse_matrix("1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16", "input").unwrap();
    let kernel = parse_matrix("-1 0 1; -1 0 1; -1 0 1", "kernel").unwrap();
    conv_animation(work_conv(&input, &kernel, 1, padding, 1, false).unwrap()).unwrap()
}

fn close(pixel: &image::Rgba<u8>, color: [u8; 3]) -> bool {
    // The GIF's palette is quantised, so colours come back within a few levels.
    (0..3).all(|c| (pixel[c] as i32 - color[c] as i32).abs() <= 24)
}

#[test]
fn worked_example_animation_has_a_frame_per_position_and_all_sixes() {
    let animation = worked_example(ExplainPadding::Valid);
    // 4x4 input, 3x3 kernel, no padding: a 2x2 output, 4 positions, then the whole.
    let (oh, ow) = animation.working.output_size();
    assert_eq!((oh, ow), (2, 2));
    let captions = animation.captions();
    assert_eq!(captions.len(), oh * ow + 1);
    for (k, caption) in captions[..oh * ow].iter().enumerate() {
        let (i, j) = (k / ow, k % ow);
        assert!(caption.starts_with(&format!("S({i},{j}) = ")), "{caption}");
        assert!(caption.ends_with(" = 6"), "{caption}");
        assert_eq!(caption.matches('·').count(), 9, "{caption}");
    }
    assert_eq!(
        captions[0],
        "S(0,0) = 1·(-1) + 2·0 + 3·1 + 5·(-1) + 6·0 + 7·1 + 9·(-1) + 10·0 + 11·1 = 6"
    );

    let path = std::env::temp_dir().join(format!("convnet-anim-{}.gif", std::process::id()));
    animation.save_gif(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 1_000_000, "{size} bytes");
    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let frames = image::codecs::gif::GifDecoder::new(file)
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(frames.len(), oh * ow + 1);
    let l = animation.layout;
    for (k, frame) in frames.iter().enumerate() {
        let buffer = frame.buffer();
        assert_eq!(buffer.dimensions(), (l.width, l.height));
        // A corner of each input cell, away from its number and the window's edges.
        let at = |(x, y): (u32, u32)| buffer.get_pixel(x + 5, y + 5);
        for r in 0..4 {
            for c in 0..4 {
                let inside = k < oh * ow && {
                    let (i, j) = (k / ow, k % ow);
                    (i..i + 3).contains(&r) && (j..j + 3).contains(&c)
                };
                assert_eq!(
                    close(at(l.input_cell(r, c)), HIGHLIGHT),
                    inside,
                    "frame {k}, cell ({r}, {c})"
                );
            }
        }
        // The output cell being computed is highlighted too.
        if k < oh * ow {
            assert!(
                close(at(l.output_cell(k / ow, k % ow)), HIGHLIGHT),
                "frame {k}"
            );
        }
    }
    if let Ok(dir) = std::env::var("CONVNET_DUMP_FRAMES") {
        for (k, f) in animation.render().unwrap().iter().enumerate() {
            f.save(format!("{dir}/frame{k}.png")).unwrap();
        }
    }
}

/// With 'same' padding the window also covers the zeros; a large input is sampled down
/// to at most MAX_STEPS positions and its file stays small.
#[test]
fn padded_and_large_inputs_animate() {
    let animation = worked_example(ExplainPadding::Same);
    assert_eq!(animation.frames.len(), 16 + 1);
    assert_eq!(animation.frames[0].position, Some((0, 0)));
    assert!(animation.captions()[0].starts_with("S(0,0) = 0·(-1) + 0·0 + 0·1 + 0·(-1) + 1·0"));
    let input: Vec<Vec<f64>> = (0..64)
        .map(|r| (0..64).map(|c| ((r * 7 + c * 3) % 256) as f64).collect())
        .collect();
    let kernel = parse_matrix("-1 0 1; -2 0 2; -1 0 1", "kernel").unwrap();
    let working = work_conv(&input, &kernel, 1, ExplainPadding::Same, 1, false).unwrap();
    let expected = working.output.clone();
    let big = conv_animation(working).unwrap();
    assert_eq!(big.frames.len(), convnet::explain::MAX_STEPS + 1);
    assert_eq!(big.frames[big.frames.len() - 2].position, Some((63, 63)));
    assert_eq!(
        big.output, expected,
        "the engine's sums are the explanation's"
    );
    let path = std::env::temp_dir().join(format!("convnet-big-{}.gif", std::process::id()));
    big.save_gif(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    std::fs::remove_file(&path).ok();
    assert!(size < 4_000_000, "{size} bytes");
}
